"""Who the designated approvers of a registered model are, from one setting.

The setting is either one list for every model ("carol,dave") or a list per tenant
("acme=carol,dave;globex=erin"); a tenant's approvers decide for that tenant's models
(`<tenant>.<use case>`) only, and a tenant the setting does not name has none.
"""


def approvers_of(setting: str, model: str) -> list[str]:
    if "=" not in setting:
        return _names(setting)
    tenant = model.split(".", 1)[0]
    for entry in setting.split(";"):
        name, _, approvers = entry.partition("=")
        if name.strip() == tenant:
            return _names(approvers)
    return []


def _names(comma_separated: str) -> list[str]:
    return [name.strip() for name in comma_separated.split(",") if name.strip()]
