"""
Choosing the final response of a forked Signal: RFC 3261 section 16.7.

When every branch of a fork has answered with a failure, the caller gets
one of those answers, the "best":

  - a 6xx (a global failure: the callee declined everywhere) beats all;
  - otherwise the lowest response class wins (3xx before 4xx before 5xx);
  - within the class, responses that tell the caller how to try again
    (401, 407, 415, 420, 484) come first, then other specific codes
    (486 Busy Here, 404 Not Found ...), and last the codes that say only
    that nothing happened in time or at all (408, 480, 487, 503) -- which
    is why a busy device's 486 beats another device's 408 timeout;
  - among equals, the response that arrived first.

A 503 chosen this way goes back as 500 (section 16.7 step 6): the 503 said
that one downstream server is overloaded, not that this one is.

Everything here is pure: lists of responses in, one response out.
"""

from collections.abc import Iterable

import attrs

from communigate.signal.model import REASONS, Response

__all__ = ["best_response", "choose_final", "forwarded", "rank"]

#: Codes that say how the request could succeed when sent again.
ACTIONABLE = frozenset({401, 407, 415, 420, 484})

#: Codes that carry the least information: nobody answered in time, nobody
#: is there, the branch was cancelled, a server was overloaded.
UNINFORMATIVE = frozenset({408, 480, 487, 503})


def rank(response: Response) -> tuple[int, int]:
    """
    The sort key of a final response: lower is better.

    Success ranks before everything (a fork ends at the first 2xx, so a
    2xx among failures is only ranked by callers who collected it anyway),
    6xx next, then the classes in order; within a class the actionable
    codes, the specific ones, and the uninformative ones.
    """
    code = response.code
    klass = code // 100
    if klass == 2:
        order = 0
    elif klass == 6:
        order = 1
    else:
        order = klass
    if code in ACTIONABLE:
        tier = 0
    elif code in UNINFORMATIVE:
        tier = 2
    else:
        tier = 1
    return (order, tier)


def best_response(responses: Iterable[Response]) -> Response:
    """
    The best of C{responses} (final responses; provisional ones are not
    considered), itself, unchanged.  The first of equally good responses
    wins.

    @raise ValueError: when there is no final response to choose from.
    """
    best = None
    best_key = None
    for candidate in responses:
        if candidate.code < 200:
            continue
        key = rank(candidate)
        if best is None or key < best_key:
            best, best_key = candidate, key
    if best is None:
        raise ValueError("no final response to choose from")
    return best


def forwarded(response: Response) -> Response:
    """
    C{response} as it goes back to the caller: a 503 becomes a 500 with the
    same headers and body; everything else is unchanged.
    """
    if response.code != 503:
        return response
    return attrs.evolve(response, code=500, reason=REASONS[500])


def choose_final(responses: Iterable[Response]) -> Response:
    """
    The response the caller gets when every branch failed.
    """
    return forwarded(best_response(responses))
