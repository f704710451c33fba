"""The token estimate used for remote models, checked against the built-in model's real
tokenizer on many kinds of text."""

# ruff: noqa: RUF001 (text in other scripts, on purpose)

import pytest

from apps.providers.base import ChatMessage
from apps.providers.tokens import prompt_tokens_estimate, text_tokens_estimate
from tests.factories import builtin_provider

SAMPLES = {
    "prose": "The quick brown fox jumps over the lazy dog. In 1998, researchers at the university "
    "published a landmark study on neural networks, which changed how we think about machine "
    "learning forever.",
    "chat": "Hi! Can you help me write an email to my boss asking for Friday off? Thanks :)",
    "code": "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + "
    "fib(n - 2)\n\nprint([fib(i) for i in range(10)])",
    "json": '{"name": "Alice", "age": 30, "tags": ["a", "b"], "nested": {"x": 1.5, "y": null}}',
    "numbers": "3.14159 2.71828 1234567890 42 0.0001 99999 2024-01-15 10:30:00",
    "sql": "SELECT u.id, COUNT(o.id) AS orders FROM users u LEFT JOIN orders o ON o.user_id = u.id "
    "WHERE u.created_at > '2024-01-01' GROUP BY u.id;",
    "french": "Bonjour, je voudrais réserver une chambre pour deux personnes à partir de demain.",
    "german": "Die Donaudampfschifffahrtsgesellschaftskapitänsmütze liegt auf dem Tisch.",
    "russian": "Привет, как дела? Я хотел бы узнать больше о вашей компании и её продуктах.",
    "chinese": "你好，我想了解一下你们公司的产品和服务。请问有什么推荐吗？",
    "korean": "안녕하세요, 오늘 날씨가 정말 좋네요. 내일 회의는 몇 시에 시작하나요?",
    "emoji": "Great job 🎉🎉 👍 I love it ❤️ 😂😂😂",
    "identifiers": "550e8400-e29b-41d4-a716-446655440000 SGVsbG8gV29ybGQhIFRoaXM= xq7Zk9Lp2Wm4",
    "upper": "THIS IS ALL UPPERCASE TEXT WITH SOME WORDS LIKE INTERNATIONALIZATION",
}


@pytest.mark.parametrize("name", SAMPLES)
def test_the_estimate_stays_near_the_real_count(name: str) -> None:
    real = builtin_provider().count_text_tokens(SAMPLES[name])
    assert 0.6 * real <= text_tokens_estimate(SAMPLES[name]) <= 2.0 * real


def test_the_estimate_errs_high_on_average() -> None:
    provider = builtin_provider()
    ratios = [
        text_tokens_estimate(text) / provider.count_text_tokens(text) for text in SAMPLES.values()
    ]
    assert 1.0 <= sum(ratios) / len(ratios) <= 1.4


def test_a_prompt_estimate_counts_the_template_too() -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", SAMPLES["chat"])]
    real = builtin_provider().count_prompt_tokens(messages)
    estimate = prompt_tokens_estimate(messages)
    assert real <= estimate <= 1.5 * real
    assert text_tokens_estimate("") == 0
