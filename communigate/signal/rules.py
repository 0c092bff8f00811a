"""
Signal Rules: the automated rules a server, a domain and an account keep
for incoming Signals, as a pure model, a parser of their stored data form,
an evaluator and the per-Signal plan the Signal service follows.

Why it is pure: rules are data the directory stores and the CLI exchanges
(CommuniGate's data format, L{communigate.formats.cgdata}); the Signal
service only asks "what now?" at each stage.  Nothing here touches the
network, a clock or a log: the time comes in C{SignalFacts.now}, and the
log lines come back in the L{Decision}.

Data form (CommuniGate's CLI form).  A rule set is an array of rules; a
rule is C{(priority, name, conditions, actions [, comment])}:

- priority: C{0} to C{10}, as a string or a number, or the XIMSS words
  C{Inactive} (0) and C{Highest} (10).  A rule of priority 0 never runs.
- conditions: an array of C{(opCode, operation, parameter)}, all of which
  must hold (none: always); see L{communigate.signal.conditions}.
- actions: an array of C{(action [, parameter])}, done in order:
  C{Reject with} (C{"486 Busy Here"}, a code alone, text alone for a 603
  with that reason, or nothing for C{603 Decline}), C{Redirect to} and
  C{Fork to} (a comma-separated list of addresses), C{Stop Processing},
  C{Discard Rules}, C{Write To Log} (the text; without one, the rule name).
- rule names are unique within a set.

The stage [our choice].  XIMSS keeps a rule's stage in a separate
C{stage} attribute (C{0} immediately, N seconds, C{995} no answer,
C{997} busy, C{999} error).  The CLI form has no slot for it, so we carry it
as a pseudo-condition C{(Stage, is, value)} among the conditions, where the
value is C{0} or C{immediately}, a number of seconds C{1} to C{600}, C{995}
or C{no answer}, C{997} or C{busy}, C{999} or C{error}.  No Stage
condition means immediately.  L{rules_as_data} writes it first, with the
words for the failure stages and a number for a timed stage.

Addresses in C{Redirect to}/C{Fork to}: C{name@domain}, a URI
(C{sip:...}, C{<sip:...>}, C{tel:...}), C{#app} or C{program#account} are
kept as they are; a bare name means the domain of the account the rules
are applied for, and stays bare when there is none (the server's
immediate rules, before routing).

Merging (within one stage): server rules with priority above 5, domain rules
above 5, all account rules, domain rules 5 and below, server rules 5 and
below; each group by priority, highest first, then in stored order.  The
server's immediate rules run before the target account is known (a plan for
no account holds only them) and are not part of the plan for an account.
"""

import attrs
from zope.interface import implementer

from communigate.interfaces import ISignalRules
from communigate.signal.conditions import Condition
from communigate.signal.model import NOTHING, Decision, SignalFacts, response

__all__ = [
    "RulesError", "Stage", "Action", "Rule", "RulePlan", "SignalRules",
    "SignalFacts", "parse_rules", "rules_as_data", "update_rule",
    "delete_rule", "merged", "evaluate",
    "REJECT", "REDIRECT", "FORK", "STOP", "DISCARD", "LOG",
]


class RulesError(ValueError):
    """
    A rule set, a rule or a rule change that cannot be accepted.

    @ivar reason: what is wrong, without the rule.
    @ivar index: the rule's position in its set (from 0), or L{None}.
    @ivar name: the rule's name, or L{None} when it has none.
    """

    def __init__(self, reason, index=None, name=None):
        self.reason = reason
        self.index = index
        self.name = name
        where = []
        if index is not None:
            where.append(f"rule at index {index}")
        if name is not None:
            where.append(f"rule {name!r}" if index is None else f"({name!r})")
        super().__init__(" ".join(where) + ": " + reason if where else reason)


# ------------------------------------------------------------------ stages

_FAILURE_WORDS = {995: "no answer", 997: "busy", 999: "error"}
_STAGE_WORDS = {"immediately": 0, **{w: c for c, w in _FAILURE_WORDS.items()}}
MAX_DELAY = 600


def _check_stage_code(instance, attribute, value):
    if type(value) is not int or not (
        0 <= value <= MAX_DELAY or value in _FAILURE_WORDS
    ):
        raise ValueError(
            f"bad stage {value!r}: expected 0 (immediately), 1-{MAX_DELAY}"
            " seconds, 995 (no answer), 997 (busy) or 999 (error)")


@attrs.frozen(repr=False)
class Stage:
    """
    When a rule runs, by its XIMSS code: C{0} immediately, C{1}-C{600}
    after that many seconds, C{995} on no answer, C{997} on busy, C{999} on
    another error.  Use the constants and L{Stage.after}.
    """

    code: int = attrs.field(validator=_check_stage_code)

    @property
    def seconds(self) -> int | None:
        """The delay of a timed stage; L{None} for the others."""
        return self.code if 0 < self.code <= MAX_DELAY else None

    @classmethod
    def after(cls, seconds: int) -> "Stage":
        """The stage that runs C{seconds} (1-600) after the Signal began."""
        if type(seconds) is not int or not 0 < seconds <= MAX_DELAY:
            raise ValueError(f"bad delay {seconds!r}: expected 1-{MAX_DELAY} seconds")
        return cls(seconds)

    @classmethod
    def parse(cls, value) -> "Stage":
        """A stage from its data form (see the module docstring)."""
        if isinstance(value, str):
            text = " ".join(value.split()).lower()
            if text in _STAGE_WORDS:
                return cls(_STAGE_WORDS[text])
            if not text.isdigit() or not text.isascii():
                raise ValueError(
                    f"bad stage {value!r}: expected immediately, seconds,"
                    " no answer, busy or error")
            value = int(text)
        return cls(value)

    def as_data(self) -> str:
        return _FAILURE_WORDS.get(self.code) or str(self.code)

    def __repr__(self):
        if self.seconds is not None:
            return f"Stage.after({self.seconds})"
        return "Stage." + (_FAILURE_WORDS.get(self.code) or "immediately").upper().replace(" ", "_")


Stage.IMMEDIATELY = Stage(0)
Stage.NO_ANSWER = Stage(995)
Stage.BUSY = Stage(997)
Stage.ERROR = Stage(999)

#: Final responses that mean "busy" and "no answer" to the failure stages.
BUSY_CODES = frozenset({486, 600, 603})
NO_ANSWER_CODES = frozenset({408, 480})


# ----------------------------------------------------------------- actions

REJECT, REDIRECT, FORK = "Reject with", "Redirect to", "Fork to"
STOP, DISCARD, LOG = "Stop Processing", "Discard Rules", "Write To Log"
_ACTION_KEYS = {
    "".join(a.split()).lower(): a for a in (REJECT, REDIRECT, FORK, STOP, DISCARD, LOG)
}


def _action_name(name):
    if not isinstance(name, str):
        raise ValueError(f"action must be a string, not {name!r}")
    try:
        return _ACTION_KEYS["".join(name.split()).lower()]
    except KeyError:
        raise ValueError(f"unknown action {name!r}") from None


def _action_parameter(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"action parameter must be a string, not {value!r}")


def _rejection(parameter):
    text = (parameter or "").strip()
    head, _, rest = text.partition(" ")
    if len(head) == 3 and head.isdigit() and head.isascii():
        code = int(head)
        if not 400 <= code <= 699:
            raise ValueError(f"bad Reject with {parameter!r}: the code must be 400-699")
        return response(code, rest.strip() or None)
    return response(603, text or None)


def split_addresses(text):
    """
    C{"a, <sip:b@x>, #app"} -> C{["a", "<sip:b@x>", "#app"]}: commas inside
    C{<...>} or quotes do not split.
    """
    items, current, closing = [], [], None
    for c in text:
        if closing is not None:
            if c == closing:
                closing = None
        elif c == "<":
            closing = ">"
        elif c == '"':
            closing = '"'
        elif c == ",":
            items.append("".join(current).strip())
            current = []
            continue
        current.append(c)
    if closing is not None:
        raise ValueError(f"unbalanced {'<' if closing == '>' else closing} in {text!r}")
    items.append("".join(current).strip())
    return [item for item in items if item]


def qualify(address, domain):
    """A bare name -> C{name@domain}; every other address form as it is."""
    if not domain or any(c in address for c in "@:<#"):
        return address
    return f"{address}@{domain}"


@attrs.frozen
class Action:
    """
    One rule action, checked when it is made.

    @ivar action: the canonical action name (L{REJECT}, L{FORK} ...).
    @ivar parameter: its parameter text, L{None} when absent.
    @raise ValueError: an unknown action or a bad parameter.
    """

    action: str = attrs.field(converter=_action_name)
    parameter: str | None = attrs.field(default=None, converter=_action_parameter)
    _effect = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self):
        effect = None
        if self.action in (STOP, DISCARD):
            if self.parameter:
                raise ValueError(f"{self.action} takes no parameter, got {self.parameter!r}")
            object.__setattr__(self, "parameter", None)
        elif self.action == REJECT:
            effect = _rejection(self.parameter)
        elif self.action in (REDIRECT, FORK):
            effect = tuple(split_addresses(self.parameter or ""))
            if not effect:
                raise ValueError(f"{self.action} needs one or more addresses")
        object.__setattr__(self, "_effect", effect)

    @property
    def rejection(self):
        """For L{REJECT}, the final L{Response} it answers with."""
        return self._effect if self.action == REJECT else None

    @property
    def addresses(self) -> tuple[str, ...]:
        """For L{REDIRECT} and L{FORK}, the addresses as written."""
        return self._effect if self.action in (REDIRECT, FORK) else ()


# ------------------------------------------------------------------- rules

_PRIORITY_WORDS = {"inactive": 0, "highest": 10}


def _priority(value):
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _PRIORITY_WORDS:
            return _PRIORITY_WORDS[text]
        if text.isdigit() and text.isascii():
            value = int(text)
    if type(value) is not int or not 0 <= value <= 10:
        raise ValueError(
            f"bad priority {value!r}: expected 0-10, Inactive or Highest")
    return value


def _check_name(instance, attribute, value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"a rule name must be a non-empty string, not {value!r}")


def _all_of(kind):
    def check(instance, attribute, value):
        for item in value:
            if not isinstance(item, kind):
                raise TypeError(f"{attribute.name} must hold {kind.__name__}s, not {item!r}")
    return check


@attrs.frozen
class Rule:
    """
    One Signal Rule.

    @ivar priority: 0 (inactive) to 10.
    @ivar stage: when it runs, a L{Stage}.
    @ivar conditions: L{Condition}s that must all hold.
    @ivar actions: L{Action}s done in order.
    """

    priority: int = attrs.field(converter=_priority)
    name: str = attrs.field(validator=_check_name)
    stage: Stage = attrs.field(
        default=Stage.IMMEDIATELY, validator=attrs.validators.instance_of(Stage))
    conditions: tuple = attrs.field(default=(), converter=tuple, validator=_all_of(Condition))
    actions: tuple = attrs.field(default=(), converter=tuple, validator=_all_of(Action))
    comment: str = attrs.field(default="", validator=attrs.validators.instance_of(str))

    @property
    def active(self) -> bool:
        return self.priority > 0


def _shape(value):
    return isinstance(value, (list, tuple))


def _describe(item):
    return "(" + ", ".join(str(x) for x in item) + ")"


def _parse_rule(item, index):
    """One rule from its data form; RulesError naming it otherwise."""
    if not _shape(item):
        raise RulesError(
            f"a rule must be an array (priority, name, conditions, actions"
            f" [, comment]), not {item!r}", index)
    name = item[1] if len(item) > 1 and isinstance(item[1], str) else None

    def fail(reason):
        return RulesError(reason, index, name)

    if len(item) not in (4, 5):
        raise fail(f"a rule has 4 or 5 elements (priority, name, conditions,"
                   f" actions [, comment]), not {len(item)}")
    priority, _, conditions, actions = item[:4]
    comment = item[4] if len(item) == 5 else ""
    if name is None or not name:
        raise fail(f"the rule name must be a non-empty string, not {item[1]!r}")
    try:
        priority = _priority(priority)
    except ValueError as e:
        raise fail(str(e)) from None
    if not _shape(conditions):
        raise fail(f"conditions must be an array, not {conditions!r}")
    if not _shape(actions):
        raise fail(f"actions must be an array, not {actions!r}")
    if not isinstance(comment, str):
        raise fail(f"the comment must be a string, not {comment!r}")
    stage, parsed = None, []
    for number, condition in enumerate(conditions, 1):
        if not _shape(condition) or len(condition) != 3:
            raise fail(f"condition {number} must be an array (opCode, operation,"
                       f" parameter), not {condition!r}")
        try:
            if isinstance(condition[0], str) and "".join(condition[0].split()).lower() == "stage":
                if stage is not None:
                    raise ValueError("a rule has one Stage")
                if not isinstance(condition[1], str) or condition[1].strip().lower() != "is":
                    raise ValueError("Stage takes only 'is'")
                stage = Stage.parse(condition[2])
            else:
                parsed.append(Condition(*condition))
        except ValueError as e:
            raise fail(f"condition {number} {_describe(condition)}: {e}") from None
    done = []
    for number, action in enumerate(actions, 1):
        if not _shape(action) or len(action) not in (1, 2):
            raise fail(f"action {number} must be an array (action [, parameter]),"
                       f" not {action!r}")
        try:
            done.append(Action(*action))
        except ValueError as e:
            raise fail(f"action {number} {_describe(action)}: {e}") from None
    return Rule(priority, name, stage or Stage.IMMEDIATELY, parsed, done, comment)


def parse_rules(data) -> tuple[Rule, ...]:
    """
    A rule set from its data form (an array of rules), whole or not at all.

    @raise RulesError: naming the first bad rule (index and name) and why.
    """
    if not _shape(data):
        raise RulesError(f"signal rules must be an array of rules, not {data!r}")
    rules, names = [], set()
    for index, item in enumerate(data):
        rule = _parse_rule(item, index)
        if rule.name in names:
            raise RulesError("another rule has this name", index, rule.name)
        names.add(rule.name)
        rules.append(rule)
    return tuple(rules)


def rules_as_data(rules) -> list:
    """The canonical data form of C{rules}; L{parse_rules} reads it back."""
    data = []
    for rule in rules:
        conditions = [] if rule.stage == Stage.IMMEDIATELY else [
            ["Stage", "is", rule.stage.as_data()]]
        conditions += [[c.op_code, c.operation, c.parameter] for c in rule.conditions]
        actions = [[a.action] if a.parameter is None else [a.action, a.parameter]
                   for a in rule.actions]
        item = [str(rule.priority), rule.name, conditions, actions]
        if rule.comment:
            item.append(rule.comment)
        data.append(item)
    return data


def _position(rules, name):
    for index, rule in enumerate(rules):
        if rule.name == name:
            return index
    return None


def update_rule(rules, data) -> tuple[Rule, ...]:
    """
    C{rules} after CommuniGate's C{UPDATE...SIGNALRULE}: a full rule
    replaces the rule of its name (in its place) or is added at the end;
    C{(priority, name)} (fewer than 4 elements) changes only the priority
    of the rule of that name.

    @raise RulesError: a bad rule, or the short form for an unknown name.
    """
    rules = tuple(rules)
    if not _shape(data) or len(data) < 2:
        raise RulesError(f"a rule update is (priority, name [, ...]), not {data!r}")
    name = data[1]
    index = _position(rules, name) if isinstance(name, str) else None
    if len(data) < 4:
        if index is None:
            raise RulesError("there is no rule of this name", name=str(name))
        try:
            priority = _priority(data[0])
        except ValueError as e:
            raise RulesError(str(e), index, name) from None
        changed = attrs.evolve(rules[index], priority=priority)
        return rules[:index] + (changed,) + rules[index + 1:]
    if index is None:
        return rules + (_parse_rule(data, len(rules)),)
    return rules[:index] + (_parse_rule(data, index),) + rules[index + 1:]


def delete_rule(rules, name) -> tuple[Rule, ...]:
    """C{rules} without the rule named C{name}; RulesError if there is none."""
    rules = tuple(rules)
    index = _position(rules, name)
    if index is None:
        raise RulesError("there is no rule of this name", name=str(name))
    return rules[:index] + rules[index + 1:]


# ------------------------------------------------------ merging, evaluating

def merged(server, domain, account, stage) -> list[Rule]:
    """
    The active rules of one stage in the order they run: server > 5,
    domain > 5, account, domain <= 5, server <= 5, each group by priority
    (highest first) then stored order.  Pure ordering: leaving out the
    server's immediate rules for an account is the caller's business
    (L{SignalRules.plan} does it).
    """
    def group(rules, keep):
        chosen = [r for r in rules if r.stage == stage and r.active and keep(r)]
        return sorted(chosen, key=lambda r: -r.priority)

    def high(r):
        return r.priority > 5

    def low(r):
        return r.priority <= 5

    return [
        *group(server, high), *group(domain, high), *group(account, lambda r: True),
        *group(domain, low), *group(server, low),
    ]


def _domain_of(account):
    if not isinstance(account, str) or "@" not in account:
        return None
    return account.rpartition("@")[2] or None


def evaluate(rules, facts, account=None) -> tuple[Decision, bool]:
    """
    Run one stage's merged C{rules} on C{facts}: every active rule whose
    conditions all hold does its actions in order.  A reject or a redirect
    ends the stage (so the first reject wins), forks and log lines add up,
    C{Stop Processing} ends the stage, C{Discard Rules} ends it too and
    asks that no later stage run.  Bare names are qualified with the domain
    of C{account}.

    @return: the L{Decision} and whether the rules were discarded.
    """
    domain = _domain_of(account)
    reject = redirect = None
    fork, log = [], []
    for rule in rules:
        if not rule.active or not all(c.holds(facts) for c in rule.conditions):
            continue
        for action in rule.actions:
            kind = action.action
            if kind == REJECT:
                reject = action.rejection
            elif kind == REDIRECT:
                redirect = tuple(qualify(a, domain) for a in action.addresses)
            elif kind == FORK:
                fork.extend(a for a in (qualify(a, domain) for a in action.addresses)
                            if a not in fork)
            elif kind == LOG:
                log.append(rule.name if action.parameter is None else action.parameter)
            if kind in (REJECT, REDIRECT, STOP, DISCARD):
                decision = Decision(reject, redirect, tuple(fork), tuple(log))
                return decision, kind == DISCARD
    if reject is None and redirect is None and not fork and not log:
        return NOTHING, False
    return Decision(reject, redirect, tuple(fork), tuple(log)), False


class RulePlan:
    """
    The rules in force for one Signal and target, stage by stage.  The
    Signal service asks L{immediate} first, then L{after} at each of
    L{delays}, and L{on_failure} if the target fails.  Each stage is
    evaluated once (asking again gives the same Decision); once a stage
    runs C{Discard Rules}, every stage not yet evaluated gives L{NOTHING}
    and L{delays} is empty.
    """

    def __init__(self, stages, facts, account=None):
        """
        @param stages: L{Stage} -> the merged rules of that stage.
        @param facts: the L{SignalFacts} the conditions look at.
        @param account: the local account the rules are for (bare names in
            addresses get its domain), or L{None}.
        """
        self._stages = {stage: tuple(rules) for stage, rules in stages.items() if rules}
        self._facts = facts
        self._account = account
        self._decisions = {}
        self._discarded = False

    @property
    def discarded(self) -> bool:
        """Whether a stage ran C{Discard Rules}."""
        return self._discarded

    def rules(self, stage) -> tuple[Rule, ...]:
        """The merged rules of C{stage}, in the order they run."""
        return self._stages.get(stage, ())

    def _decide(self, stage):
        if stage in self._decisions:
            return self._decisions[stage]
        if self._discarded:
            return NOTHING
        decision, discard = evaluate(self.rules(stage), self._facts, self._account)
        self._decisions[stage] = decision
        self._discarded = discard
        return decision

    def immediate(self) -> Decision:
        """The decision of the immediate stage."""
        return self._decide(Stage.IMMEDIATELY)

    def delays(self) -> tuple[int, ...]:
        """The seconds, ascending, at which timed stages have rules."""
        if self._discarded:
            return ()
        return tuple(sorted(s.seconds for s in self._stages if s.seconds is not None))

    def after(self, seconds) -> Decision:
        """The decision of the stage C{seconds} after the start."""
        for stage in self._stages:
            if stage.seconds is not None and stage.seconds == seconds:
                return self._decide(stage)
        return NOTHING

    def on_failure(self, response) -> Decision:
        """
        The decision of the failure stage for the target's final
        C{response} (a L{Response}, or its code): busy for 486, 600, 603;
        no answer for 408 and 480 (no device); error for any other code of
        400 and above.  Not a failure (below 400): L{NOTHING}.
        """
        code = getattr(response, "code", response)
        if code in BUSY_CODES:
            return self._decide(Stage.BUSY)
        if code in NO_ANSWER_CODES:
            return self._decide(Stage.NO_ANSWER)
        if isinstance(code, int) and code >= 400:
            return self._decide(Stage.ERROR)
        return NOTHING


@implementer(ISignalRules)
class SignalRules:
    """
    The Signal Rules in force, read from C{source} on every plan:
    C{source.server_signal_rules()}, C{source.domain_signal_rules(domain)}
    and C{source.account_signal_rules(account)} each give a tuple of
    L{Rule} (the directory stores and parses them).
    """

    def __init__(self, source):
        self.source = source

    def plan(self, signal, account, facts) -> RulePlan:
        """
        The plan for out-of-dialog C{signal} to local C{account}: every
        stage of the merged server (but not server immediate), domain and
        account rules.  With C{account} L{None}: only the server's immediate
        rules.  An in-dialog Signal gets a plan in which every stage is
        L{NOTHING}.
        """
        if signal.in_dialog:
            return RulePlan({}, facts, account)
        server = tuple(self.source.server_signal_rules())
        if account is None:
            immediate = merged(server, (), (), Stage.IMMEDIATELY)
            return RulePlan({Stage.IMMEDIATELY: immediate}, facts)
        domain_name = _domain_of(account)
        domain = tuple(self.source.domain_signal_rules(domain_name)) if domain_name else ()
        own = tuple(self.source.account_signal_rules(account))
        server = tuple(r for r in server if r.stage != Stage.IMMEDIATELY)
        stages = {r.stage for r in (*server, *domain, *own) if r.active}
        return RulePlan(
            {stage: merged(server, domain, own, stage) for stage in stages},
            facts, account)


class StoredRules:
    """
    The directory's stored Signal Rules as L{SignalRules} reads them.

    The directory keeps each level's rules as the canonical data the CLI
    wrote (already checked) and hands out the same data object until the
    record changes (its cache is per store version), so a level's parsed
    rules are kept with the very object they were parsed from and parsed
    again only when the directory gives another: a change by the admin
    tool is in force for the next Signal the directory sees it in.
    Parsing them for every Signal was about an eighth of a Signal's cost
    through the core (C{benchmarks/signals_core.py}).
    """

    #: Parsed rule sets kept at most; beyond, all are dropped and parsed again.
    LIMIT = 10_000

    def __init__(self, directory) -> None:
        self._directory = directory
        self._parsed: dict = {}

    def _rules(self, owner: str | None) -> tuple[Rule, ...]:
        data = self._directory.signal_rules(owner)
        if not data:
            return ()
        kept = self._parsed.get(owner)
        if kept is not None and kept[0] is data:
            return kept[1]
        rules = parse_rules(data)
        if len(self._parsed) >= self.LIMIT:
            self._parsed.clear()
        # The data object itself is kept: while it is, no new object can
        # have its identity, so "is" cannot mistake another for it.
        self._parsed[owner] = (data, rules)
        return rules

    def server_signal_rules(self) -> tuple[Rule, ...]:
        return self._rules(None)

    def domain_signal_rules(self, domain: str) -> tuple[Rule, ...]:
        return self._rules(domain)

    def account_signal_rules(self, account: str) -> tuple[Rule, ...]:
        return self._rules(account)
