"""Usage on every answer: tokens, latency, time to first token, and prices computed in Decimal
the way Dify does (tokens * unit price * price unit, seven decimal places, decimal strings)."""

from decimal import Decimal

import pytest

from apps.applications.models import App
from apps.conversations.pricing import prices_for
from apps.dify.events import usage_metadata
from apps.scheduling.models import TaskStatus
from tests.factories import make_app
from tests.generation.tasks import events, message_of, run, submit_to

pytestmark = pytest.mark.django_db(transaction=True)


def test_usage_with_prices_per_million_tokens() -> None:
    app = make_app(
        provider_config={"text": "one two three four", "first_token_delay_s": 0.2},
        prompt_unit_price=Decimal("2.5"),
        completion_unit_price=Decimal("10"),
        price_unit=Decimal("0.000001"),
        currency="EUR",
    )
    task = run(submit_to(app, "Count to four"))

    assert task.status == TaskStatus.SUCCEEDED
    message = message_of(task)
    usage = events(task)[-1]["metadata"]["usage"]
    assert message.completion_tokens == 4
    assert usage["prompt_tokens"] == message.prompt_tokens > 0
    assert usage["total_tokens"] == message.prompt_tokens + 4
    prompt_price = Decimal(message.prompt_tokens) * Decimal("2.5") / 1_000_000
    completion_price = Decimal(4) * Decimal(10) / 1_000_000
    assert usage["prompt_unit_price"] == "2.5"
    assert usage["prompt_price_unit"] == usage["completion_price_unit"] == "0.000001"
    assert usage["completion_unit_price"] == "10"
    assert Decimal(usage["prompt_price"]) == prompt_price.quantize(Decimal("0.0000001"))
    assert usage["completion_price"] == "0.0000400"
    assert Decimal(usage["total_price"]) == Decimal(usage["prompt_price"]) + completion_price
    assert usage["currency"] == "EUR"
    assert all(
        isinstance(usage[key], str)
        for key in ("prompt_price", "completion_price", "total_price", "prompt_unit_price")
    )
    # Timing, from the task's start: the first token came after the scripted delay.
    assert 0.2 <= usage["time_to_first_token"] <= usage["latency"]
    assert message.first_token_s == pytest.approx(usage["time_to_first_token"], abs=0.001)


def test_an_answer_keeps_the_prices_it_was_charged_after_the_app_changes_them() -> None:
    app = make_app(
        prompt_unit_price=Decimal("2.5"),
        completion_unit_price=Decimal("10"),
        price_unit=Decimal("0.000001"),
        currency="EUR",
    )
    task = run(submit_to(app, "Count to four"))
    message = message_of(task)
    charged = events(task)[-1]["metadata"]["usage"]
    assert message.total_price == Decimal(charged["total_price"]) > 0
    assert message.currency == "EUR"

    App.objects.filter(id=app.id).update(
        prompt_unit_price=Decimal("100"), completion_unit_price=Decimal("100"), currency="USD"
    )
    message = message_of(task)
    # A replay of the answer (rebuilt from the message) reports what it cost then.
    assert usage_metadata(message) == charged


def test_an_app_without_prices_costs_nothing() -> None:
    task = run(submit_to(make_app()))
    usage = events(task)[-1]["metadata"]["usage"]
    assert (usage["prompt_price"], usage["completion_price"], usage["total_price"]) == ("0",) * 3
    assert (usage["prompt_unit_price"], usage["currency"]) == ("0", "USD")


def test_prices_match_difys_example_per_thousand_tokens() -> None:
    app = make_app(
        prompt_unit_price=Decimal("0.001"),
        completion_unit_price=Decimal("0.002"),
        price_unit=Decimal("0.001"),
    )
    prices = prices_for(rates=app, prompt_tokens=1033, completion_tokens=128)

    assert (prices.prompt_unit_price, prices.prompt_price_unit) == ("0.001", "0.001")
    assert prices.prompt_price == "0.0010330"
    assert prices.completion_price == "0.0002560"
    assert prices.total_price == "0.0012890"


def test_tiny_amounts_round_half_up_to_seven_places_without_exponents() -> None:
    app = make_app(prompt_unit_price=Decimal("0.15"), price_unit=Decimal("0.000001"))
    assert prices_for(rates=app, prompt_tokens=1, completion_tokens=0).prompt_price == "0.0000002"
    assert prices_for(rates=app, prompt_tokens=3, completion_tokens=0).prompt_price == "0.0000005"
