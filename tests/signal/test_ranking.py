"""
Tests for choosing the best final response of a fork (RFC 3261 16.7).
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from communigate.signal.model import Response, response
from communigate.signal.ranking import best_response, choose_final, forwarded, rank

FAILURE_CODES = [
    300, 301, 302, 380,
    400, 401, 403, 404, 407, 408, 415, 420, 480, 482, 484, 486, 487, 488,
    500, 501, 502, 503, 504,
    600, 603, 604, 606,
]  # fmt: skip

failures = st.lists(
    st.builds(
        Response,
        code=st.sampled_from(FAILURE_CODES),
        reason=st.text(max_size=5),
        origin=st.text(max_size=5),
    ),
    min_size=1,
    max_size=8,
)


def codes(*numbers):
    return [response(number, origin=f"branch {index}") for index, number in enumerate(numbers)]


def test_busy_beats_a_timeout_whichever_arrives_first():
    assert best_response(codes(486, 408)).code == 486
    assert best_response(codes(408, 486)).code == 486


def test_a_global_failure_beats_every_other_class():
    assert best_response(codes(302, 486, 603, 500)).code == 603


def test_the_lowest_class_wins_without_a_global_failure():
    assert best_response(codes(500, 486, 503)).code == 486
    assert best_response(codes(404, 302)).code == 302


def test_responses_that_say_how_to_retry_are_preferred_within_the_class():
    assert best_response(codes(486, 407, 404)).code == 407
    assert best_response(codes(480, 484)).code == 484


def test_specific_codes_beat_uninformative_ones_in_the_class():
    assert best_response(codes(480, 487, 404, 408)).code == 404
    assert best_response(codes(503, 502)).code == 502


def test_the_first_of_equally_good_responses_wins():
    chosen = best_response(codes(404, 486, 403))
    assert chosen.origin == "branch 0"


def test_provisional_responses_are_not_chosen():
    assert best_response(codes(180, 486)).code == 486
    with pytest.raises(ValueError):
        best_response(codes(180, 183))


def test_nothing_to_choose_from_is_an_error():
    with pytest.raises(ValueError):
        best_response([])


def test_a_chosen_503_goes_back_as_500():
    final = choose_final([response(503, headers=(("Retry-After", "5"),))])
    assert (final.code, final.reason, final.headers) == (
        500,
        "Server Internal Error",
        (("Retry-After", "5"),),
    )
    assert forwarded(response(486)) == response(486)


def test_success_ranks_before_every_failure():
    assert rank(response(200)) < rank(response(603)) < rank(response(302))


@given(failures)
def test_the_best_response_is_one_of_the_inputs(responses):
    assert any(candidate is best_response(responses) for candidate in responses)


@given(failures)
def test_the_final_response_is_an_input_or_a_mapped_503(responses):
    final = choose_final(responses)
    if final.code == 500 and best_response(responses).code == 503:
        return
    assert final in responses


@given(failures)
def test_any_global_failure_is_chosen(responses):
    if any(candidate.code >= 600 for candidate in responses):
        assert best_response(responses).code >= 600


@given(failures)
def test_without_a_global_failure_the_lowest_class_is_chosen(responses):
    if all(candidate.code < 600 for candidate in responses):
        lowest = min(candidate.code // 100 for candidate in responses)
        assert best_response(responses).code // 100 == lowest


@given(failures)
def test_the_choice_does_not_depend_on_order_beyond_ties(responses):
    forward, backward = best_response(responses), best_response(list(reversed(responses)))
    assert rank(forward) == rank(backward)


@given(failures, st.integers(0, 8), st.integers(0, 9))
def test_a_timeout_never_wins_over_a_busy_device(responses, busy_at, timeout_at):
    responses.insert(busy_at, response(486))
    responses.insert(timeout_at, response(408))
    assert best_response(responses).code != 408
