"""What an answer's tokens cost, as Dify computes it: tokens * unit price * price unit, in Decimal
(never float), rounded half-up to seven decimal places; every amount is a decimal string.

An answer is priced with the app's rates when it is saved, and keeps them: its `usage` (sent
again on a replay) and its total in `/v1/messages` stay what the user was charged, even after an
operator changes the app's prices."""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from apps.conversations.models import Message

PRICE_QUANTUM = Decimal("0.0000001")


def decimal_text(value: Decimal) -> str:
    """An amount as plain digits ("0.0010330", never "1.033E-3"); nothing is "0"."""
    return format(value, "f") if value != 0 else "0"


def _unit_text(value: Decimal) -> str:
    # The app's own figures, without the column's trailing zeros ("0.001", "2.5", "0").
    return decimal_text(value.normalize())


@dataclass(frozen=True)
class Prices:
    prompt_unit_price: str
    prompt_price_unit: str
    prompt_price: str
    completion_unit_price: str
    completion_price_unit: str
    completion_price: str
    total_price: str
    currency: str


class Rates(Protocol):
    """Unit prices: an app's (what its next answer costs) or a message's (what it cost)."""

    prompt_unit_price: Decimal
    completion_unit_price: Decimal
    price_unit: Decimal
    currency: str


def _price(tokens: int, unit_price: Decimal, unit: Decimal) -> Decimal:
    return (Decimal(tokens) * Decimal(unit_price) * Decimal(unit)).quantize(
        PRICE_QUANTUM, rounding=ROUND_HALF_UP
    )


def prices_for(*, rates: Rates, prompt_tokens: int, completion_tokens: int) -> Prices:
    unit = Decimal(rates.price_unit)
    prompt = _price(prompt_tokens, rates.prompt_unit_price, unit)
    completion = _price(completion_tokens, rates.completion_unit_price, unit)
    return Prices(
        prompt_unit_price=_unit_text(Decimal(rates.prompt_unit_price)),
        prompt_price_unit=_unit_text(unit),
        prompt_price=decimal_text(prompt),
        completion_unit_price=_unit_text(Decimal(rates.completion_unit_price)),
        completion_price_unit=_unit_text(unit),
        completion_price=decimal_text(completion),
        total_price=decimal_text(prompt + completion),
        currency=rates.currency,
    )


PRICE_FIELDS = (
    "prompt_unit_price",
    "completion_unit_price",
    "price_unit",
    "currency",
    "total_price",
)


def message_price(message: Message, rates: Rates) -> None:
    """Price the message's tokens with `rates` (its app's, now) and keep the rates on it."""
    message.prompt_unit_price = rates.prompt_unit_price
    message.completion_unit_price = rates.completion_unit_price
    message.price_unit = rates.price_unit
    message.currency = rates.currency
    prices = prices_for(
        rates=rates,
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
    )
    message.total_price = Decimal(prices.total_price)
