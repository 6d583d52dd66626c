"""Issue 13, fault suite: the model answering 529 or hanging, seen through a real ``kb bot``.

tests/faults/test_model_faults.py holds the answer flow to its deadline in-process; this runs
the whole path a user meets: a signed mention to ``kb bot`` (a subprocess, its store filled by
a real ``kb sync``), the real anthropic client against the fake Messages API, and the answer
read back from the fake Slack thread. Overloaded or hanging, the user gets the labelled
extractive answer in the thread and the working reaction is cleared; the fallback is not
cached, so the model's answer is served once it recovers. A refused key gives the user
"I can't answer right now" and queues one ops alert naming the setting.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from fakes.anthropic_api import FakeMessagesAPI, fake_anthropic, overloaded, text, unauthorized
from fakes.real_processes import KbProcess, World, world

from bot.fallback import FALLBACK_LABEL, OPERATOR_FAULT_TEXT

ANSWER_TIMEOUT = 90.0  # the 20 s answer deadline on a loaded machine, with room to spare


class Rig:
    def __init__(self, here: World, bot: KbProcess, api: FakeMessagesAPI) -> None:
        self.here, self.bot, self.api = here, bot, api
        self.threads = 0

    def ask(self, question: str) -> str:
        self.threads += 1
        thread = f"{1700000000 + self.threads}.000100"
        self.here.mention(self.bot, thread, question)
        self.here.wait(
            f"an answer in {thread}", lambda: bool(self.here.answers(thread)), ANSWER_TIMEOUT
        )
        (answer,) = self.here.answers(thread)
        self.here.wait(
            "the working reaction to be cleared",
            lambda: any(
                c.args.get("timestamp") == thread
                for c in self.here.slack.calls_to("reactions.remove")
            ),
        )
        return str(answer.args["text"])

    def healthy(self) -> None:
        assert self.bot.alive() and self.here.healthy(self.bot), self.here.logs()
        assert "Traceback" not in self.bot.output(), self.here.logs()


@pytest.fixture(scope="module")
def rig(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with (
        fake_anthropic() as api,
        world(pg_url, tmp_path_factory.mktemp("model-faults"), (api.key, api.url)) as here,
    ):
        here.wiki.add_page("ENG", "VPN on Windows", "<p>Windows laptops use NWP-AOVPN.</p>")
        here.wiki.add_page("ENG", "VPN on macOS", "<p>Mac laptops use the WireGuard app.</p>")
        here.wiki.add_page("ENG", "Deploy trains", "<p>Trains leave on Tuesdays.</p>")
        sync = subprocess.run(
            [sys.executable, "-m", "kb.cli", "sync"],
            env=here.environment("sync"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert sync.returncode == 0, sync.stdout + sync.stderr
        bot = here.process("bot", "bot").start()
        here.wait("the bot to listen", lambda: not bot.alive() or here.healthy(bot), 120)
        yield Rig(here, bot, api)
        api.release()


@pytest.fixture
def model(rig: Rig) -> Iterator[FakeMessagesAPI]:
    rig.api.reset()
    yield rig.api
    rig.api.release()  # a hanging reply stops waiting


def test_an_overloaded_model_gives_the_labelled_extractive_answer_never_cached(
    rig: Rig, model: FakeMessagesAPI
) -> None:
    model.script(overloaded())  # 529 on every attempt
    fallback = rig.ask("How do Windows laptops connect to the VPN?")
    assert fallback.startswith(FALLBACK_LABEL) and "NWP-AOVPN" in fallback
    assert len(model.requests) >= 1

    model.reset()
    model.script(text("Windows laptops use the NWP-AOVPN profile [1]."))
    recovered = rig.ask("How do Windows laptops connect to the VPN?")
    assert not recovered.startswith(FALLBACK_LABEL)
    assert "NWP-AOVPN profile" in recovered and len(model.requests) == 1
    rig.healthy()


def test_a_hanging_model_gives_the_labelled_extractive_answer_at_the_deadline(
    rig: Rig, model: FakeMessagesAPI
) -> None:
    model.script(text("Far too late [1].", delay=120))
    answer = rig.ask("How do Mac laptops connect to the VPN?")
    assert answer.startswith(FALLBACK_LABEL) and "WireGuard" in answer
    assert "Far too late" not in answer
    rig.healthy()


def test_a_refused_key_tells_the_user_only_that_it_cannot_answer(
    rig: Rig, model: FakeMessagesAPI
) -> None:
    model.script(unauthorized())
    answer = rig.ask("When do deploy trains leave?")
    # Only that: no "press Refresh" warning, which a refused key would make a false promise.
    assert answer.strip() == OPERATOR_FAULT_TEXT
    assert "ANTHROPIC_API_KEY" not in answer and "401" not in answer
    alerts = rig.here.sql("SELECT payload->>'error' FROM outbox WHERE kind = 'ops_alert'")
    assert len(alerts) == 1 and "ANTHROPIC_API_KEY" in str(alerts[0][0])
    assert model.key not in str(alerts[0][0])
    rig.healthy()
