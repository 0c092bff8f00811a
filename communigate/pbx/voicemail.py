"""
The stock C{voicemail} application and the mailbox it keeps.

A call to C{voicemail#account} (usually a Router record such as
C{S:<vm-bob> = voicemail#bob} or a forwarding rule of the account) reaches
the account's mailbox:

  - **A caller** hears the account's greeting (C{greeting.wav} in the
    mailbox, else a 440 Hz tone) and a beep, and what it says until it
    hangs up, presses a key or the limit passes is stored as a new
    message.  The account's message-waiting counts
    (L{communigate.interfaces.IMessageWaiting}) are then updated, so SIP
    C{message-summary} subscribers get a NOTIFY.  A full mailbox refuses
    the call: 486 C{Mailbox full} (logged).
  - **The owner** (a caller that authenticated as the account) hears one
    short beep per new message (at most ten), then the messages, new ones
    first: after each, C{1} plays the next, C{7} deletes it and plays the
    next, C{#} or 10 s without a key ends.  A played message becomes old.

Parameters, C{name=value}: C{seconds} (longest message, default 120,
1–600), C{messages} (most stored, default 50, 1–1000).  A mailbox is the
directory C{pbx/voicemail/DOMAIN/NAME/} of the data directory; its
messages are C{new-STAMP.wav} and C{old-STAMP.wav} (8 kHz 16-bit).

[D] The files are small (two minutes are under 2 MB) and written with
plain blocking I/O in the task's turn, as prompts are read.
"""

from __future__ import annotations

import os
import shutil

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import IAccountWatcher, ICallApplication, IKeepsAccountData
from communigate.media.wav import WAVError, parse_wav
from communigate.pbx.events import CallError, Event
from communigate.presence.mwi import MessageCounts

__all__ = ["Mailbox", "Mailboxes", "VoiceMail", "voicemail_settings"]

DEFAULT_SECONDS = 120
DEFAULT_MESSAGES = 50
GREETING_TONE = 440
COUNT_TONE = 800


def _number(parameters: dict, name: str, default: int, low: int, high: int) -> int:
    text = parameters.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"voicemail parameter {name} must be a whole number from {low} to {high}, not {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"voicemail parameter {name} must be a whole number from {low} to {high}, not {text!r}")
    return value


def voicemail_settings(parameters) -> tuple[int, int]:
    """
    C{(seconds, messages)} from the task's parameters (C{name=value}).

    @raise ValueError: a value out of range, naming the parameter.
    """
    named = dict(p.partition("=")[::2] for p in parameters if "=" in p)
    return (_number(named, "seconds", DEFAULT_SECONDS, 1, 600),
            _number(named, "messages", DEFAULT_MESSAGES, 1, 1000))


class Mailbox:
    """
    The stored voice messages of one account: a directory of WAV files.

    @param root: the directory all mailboxes are in.
    @param account: C{name@domain}.
    """

    def __init__(self, root: str, account: str) -> None:
        name, _, domain = account.partition("@")
        for part in (name, domain):
            if not part or part.startswith(".") or "/" in part or os.sep in part:
                raise ValueError(f"not a mailbox name: {account!r}")
        self.account = account
        self.path = os.path.join(root, domain, name)

    def messages(self) -> list[str]:
        """
        The message file names, new ones first, each group oldest first.
        """
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        new = sorted(n for n in names if n.startswith("new-") and n.endswith(".wav"))
        old = sorted(n for n in names if n.startswith("old-") and n.endswith(".wav"))
        return new + old

    def counts(self) -> MessageCounts:
        names = self.messages()
        new = sum(1 for n in names if n.startswith("new-"))
        return MessageCounts(new=new, old=len(names) - new)

    def greeting(self) -> bytes | None:
        """
        The account's own greeting as L16, or L{None}.
        """
        try:
            with open(os.path.join(self.path, "greeting.wav"), "rb") as f:
                return parse_wav(f.read()).to_l16()
        except (OSError, WAVError):
            return None

    def store(self, wav: bytes, stamp: float) -> str:
        """
        Store C{wav} as a new message; returns its file name.
        """
        os.makedirs(self.path, exist_ok=True)
        base = f"{int(stamp * 1000):014d}"
        suffix = 0
        while True:
            name = f"new-{base}{'-%d' % suffix if suffix else ''}.wav"
            path = os.path.join(self.path, name)
            try:
                with open(path, "xb") as f:
                    f.write(wav)
                return name
            except FileExistsError:
                suffix += 1

    def read(self, name: str) -> bytes:
        """
        Message C{name} as L16.
        """
        with open(os.path.join(self.path, name), "rb") as f:
            return parse_wav(f.read()).to_l16()

    def mark_old(self, name: str) -> str:
        if not name.startswith("new-"):
            return name
        old = "old-" + name[4:]
        os.replace(os.path.join(self.path, name), os.path.join(self.path, old))
        return old

    def delete(self, name: str) -> None:
        os.remove(os.path.join(self.path, name))


@implementer(IAccountWatcher)
class Mailboxes:
    """
    The mailboxes under C{root} follow their accounts: a deleted account's
    messages and greeting are removed (a new account of the same name does
    not inherit them), a renamed one's mailbox moves.
    """

    log = Logger()

    def __init__(self, root: str) -> None:
        self.root = root

    def account_removed(self, address: str) -> None:
        path = Mailbox(self.root, address).path
        if os.path.isdir(path):
            shutil.rmtree(path)
            self.log.info("Removed the voice mailbox of deleted {account}", account=address)

    def account_renamed(self, old: str, new: str) -> None:
        source, target = Mailbox(self.root, old).path, Mailbox(self.root, new).path
        if not os.path.isdir(source):
            return
        if os.path.exists(target):
            # Never merge into or overwrite another mailbox's messages.
            self.log.warn("The voice mailbox of {old} stays where it is: {new} already has one", old=old, new=new)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(source, target)


@implementer(IPlugin, ICallApplication, IKeepsAccountData)
class VoiceMail:
    """
    @param directory: where mailboxes are; default: C{pbx/voicemail} in the
        server's data directory (without one, calls get 480).
    """

    name = "voicemail"
    description = "Records messages for the account and plays them to its owner."
    log = Logger()

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory

    def _root_under(self, service) -> str | None:
        if self.directory is not None:
            return self.directory
        data_dir = getattr(service.context.config, "data_dir", "")
        return os.path.join(data_dir, "pbx", "voicemail") if data_dir else None

    def _root(self, task) -> str | None:
        return self._root_under(task.service)

    def account_data(self, service) -> Mailboxes | None:
        root = self._root_under(service)
        return None if root is None else Mailboxes(root)

    def _publish(self, task, mailbox: Mailbox) -> None:
        waiting = getattr(task.service.context, "message_waiting", None)
        if waiting is not None:
            waiting.set_counts(mailbox.account, mailbox.counts())

    async def run(self, task) -> None:
        root = self._root(task)
        if root is None:
            self.log.warn("voicemail for {account}: the server has no data directory; 480", account=task.account)
            await task.reject_call(480, "No voicemail storage")
            return
        try:
            seconds, limit = voicemail_settings(task.parameters)
        except ValueError as error:
            self.log.warn("voicemail for {account}: {error}; 500", account=task.account, error=str(error))
            await task.reject_call(500, "Voicemail misconfigured")
            return
        mailbox = Mailbox(root, task.account)
        if task.remote_authentication() == task.account:
            await self._owner(task, mailbox)
            return
        if len(mailbox.messages()) >= limit:
            self.log.info("voicemail for {account} is full ({limit} messages); 486",
                          account=task.account, limit=limit)
            task.set_status("mailbox full")
            await task.reject_call(486, "Mailbox full")
            return
        await task.accept_call()
        task.set_status("greeting")
        greeting = mailbox.greeting()
        if greeting is not None:
            played = await task.play(greeting)
        else:
            played = await task.play_tone(GREETING_TONE, 500)
        if not played and await self._hung_up(task):
            return
        task.clear_dtmf()
        await task.play_file("beep")
        task.set_status("recording")
        wav = await task.record(seconds)
        if wav is not None:
            name = mailbox.store(wav, task.service.clock.seconds())
            self._publish(task, mailbox)
            self.log.info("voicemail for {account}: message {name} stored", account=task.account, name=name)
            task.set_status("message stored")
        else:
            task.set_status("nothing recorded")
        if task.is_connected():
            await task.disconnect()

    async def _hung_up(self, task) -> bool:
        item = await task.read_input(0)
        return isinstance(item, Event) and item.is_disconnect

    async def _owner(self, task, mailbox: Mailbox) -> None:
        await task.accept_call()
        counts = mailbox.counts()
        task.set_status(f"{counts.new} new, {counts.old} old")
        for _ in range(min(counts.new, 10)):
            if not await task.play_tone(COUNT_TONE, 150):
                break
            await task.play_tone(0, 150)
        for name in mailbox.messages():
            try:
                pcm = mailbox.read(name)
            except (OSError, WAVError) as error:
                self.log.warn("voicemail for {account}: message {name} unreadable: {error}",
                              account=task.account, name=name, error=str(error))
                continue
            task.clear_dtmf()
            await task.play_file("beep")
            await task.play(pcm)
            name = mailbox.mark_old(name)
            self._publish(task, mailbox)
            item = await task.read_input(10)
            if isinstance(item, Event) and item.is_disconnect:
                return
            if item == "7":
                mailbox.delete(name)
                self._publish(task, mailbox)
                await task.play_tone(COUNT_TONE, 100)
            elif item == "#":
                break
            elif item != "1":
                break
        try:
            await task.play_file("busy", 1000)
            await task.disconnect()
        except CallError:
            pass
