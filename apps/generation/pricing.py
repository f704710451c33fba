"""What an answer's tokens cost, as Dify computes it: tokens * unit price * price unit, in Decimal
(never float), rounded half-up to seven decimal places; every amount is a decimal string."""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from apps.applications.models import App

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


def prices_for(*, app: App, prompt_tokens: int, completion_tokens: int) -> Prices:
    unit = Decimal(app.price_unit)
    prompt = (Decimal(prompt_tokens) * Decimal(app.prompt_unit_price) * unit).quantize(
        PRICE_QUANTUM, rounding=ROUND_HALF_UP
    )
    completion = (Decimal(completion_tokens) * Decimal(app.completion_unit_price) * unit).quantize(
        PRICE_QUANTUM, rounding=ROUND_HALF_UP
    )
    return Prices(
        prompt_unit_price=_unit_text(Decimal(app.prompt_unit_price)),
        prompt_price_unit=_unit_text(unit),
        prompt_price=decimal_text(prompt),
        completion_unit_price=_unit_text(Decimal(app.completion_unit_price)),
        completion_price_unit=_unit_text(unit),
        completion_price=decimal_text(completion),
        total_price=decimal_text(prompt + completion),
        currency=app.currency,
    )
