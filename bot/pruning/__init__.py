"""The parts of the pruning stage (`bot.prune` runs them in order), one level each.

`checks` validates before anything is written: the keep list against the family's routing
rules, the source's router and expert tensors against the family's layout, and the planned
output against the tensors the model class expects. `plan` is pure: from the checkpoint's
headers, the family descriptor and the kept experts it returns a `PrunePlan`, the output
shards with their typed jobs (`CopyJob`: source byte ranges copied back to back;
`DecodeJob`: MXFP4 experts dequantized to BF16), testable as a value with no file read.
`execute` runs a plan: kernel copies, mapped and prefetched reads, sha256 on background
threads, several shards at once where cores allow. `decode` is the MXFP4 -> BF16 step, the
only part that imports torch, and only when BF16 output is asked for.
"""
