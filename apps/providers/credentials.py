"""Which environment variables may hold a provider's API key.

An app names the variable (`provider_config.api_key_env`); only names the operator allowed
(`PROVIDER_KEY_ENV_ALLOWED`: exact names, or prefixes ending in `*`) are ever read, so an app
cannot send the worker's PATH, DATABASE_URL or SECRET_KEY to a server of its choosing.
"""

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_ALLOWED = (DEFAULT_KEY_ENV, "PROVIDER_KEY_*")


def key_env_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    if not name or not name.replace("_", "").isalnum() or not name.isascii():
        return False
    for rule in allowed:
        rule = rule.strip()
        if rule.endswith("*"):
            if len(rule) > 1 and name.startswith(rule[:-1]):
                return True
        elif rule and name == rule:
            return True
    return False
