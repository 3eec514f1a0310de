"""Selection strategies on hand-made scores with known answers, ties included."""

from __future__ import annotations

import numpy as np

from bot.selection.strategies import complete, final_orders, interleave, ranking


def test_ranking_orders_by_score_descending() -> None:
    scores = np.array([[0.1, 0.4, 0.3, 0.2]])
    ties = np.array([[0, 1, 2, 3]])
    assert ranking(scores, ties) == [[1, 2, 3, 0]]


def test_equal_scores_keep_the_tie_order_not_the_index() -> None:
    # The published rule: a stable sort over the order the data first listed the experts.
    scores = np.array([[0.5, 0.5, 0.5, 0.1]])
    ties = np.array([[2, 0, 1, 3]])
    assert ranking(scores, ties) == [[1, 2, 0, 3]]


def test_equal_scores_with_equal_tie_rank_fall_back_to_lower_index() -> None:
    scores = np.array([[0.2, 0.2, 0.2]])
    assert ranking(scores, np.array([[0, 0, 0]])) == [[0, 1, 2]]


def test_never_met_experts_are_left_out_of_the_ranking() -> None:
    scores = np.array([[0.0, 0.3, 0.0, 0.6], [0.5, 0.0, 0.0, 0.0]])
    ties = np.array([[-1, 0, -1, 1], [0, 1, -1, -1]])
    # Layer 1: expert 1 was met with score 0.0 and still ranks; 2 and 3 were never met.
    assert ranking(scores, ties) == [[3, 1], [0, 1]]


def test_complete_appends_missing_experts_lowest_index_first() -> None:
    assert complete([3, 1], 5) == [3, 1, 0, 2, 4]
    assert complete([], 3) == [0, 1, 2]


def test_interleave_alternates_and_skips_duplicates() -> None:
    assert interleave([4, 0, 2], [0, 1, 2, 3, 4]) == [4, 0, 1, 2, 3]


def test_interleave_fills_a_short_ranking_from_the_other_order() -> None:
    assert interleave([5], [0, 5, 1, 2]) == [5, 0, 1, 2]
    assert interleave([], [2, 0, 1]) == [2, 0, 1]


def test_final_orders_list_every_expert_once_per_layer() -> None:
    orders = final_orders([[2], [1, 0, 2]], 3)
    assert orders.tolist() == [[2, 0, 1], [1, 0, 2]]
    assert orders.dtype == np.int64
