"""Model families as data: one file per `config.json` `model_type`, plus the hooks data cannot be.

Each `<model_type>.yaml` names what the engine needs of a MoE family: its config keys
(expert count, top-k, group-limited routing, which layers are MoE), its router module and
tensors, every other tensor with its shape, and the storage layouts the Hub holds its
experts in; `bot.descriptors.schema` validates it into a `ModelDescriptor`. `hooks` holds
the router rules and chat formats that code must say. Adding a family is adding a file
here (and, for a new router rule, a hook).
"""
