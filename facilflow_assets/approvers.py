"""Names per tenant, from one setting: the designated approvers of each tenant's models, and
on the MLflow server each tenant's users and service accounts.

A setting is either one list for every tenant ("carol,dave") or a list per tenant
("acme=carol,dave;globex=erin"); a tenant the per-tenant form does not name has none.
"""


def names_for(setting: str, tenant: str) -> list[str]:
    if "=" not in setting:
        return _names(setting)
    for entry in setting.split(";"):
        name, _, names = entry.partition("=")
        if name.strip() == tenant:
            return _names(names)
    return []


def named_tenants(setting: str) -> set[str]:
    """The tenants a per-tenant setting names (none for one list)."""
    return {e.partition("=")[0].strip() for e in setting.split(";") if "=" in e} - {""}


def every_name(setting: str) -> set[str]:
    """Every name of the setting, whichever tenant it is given for."""
    if "=" not in setting:
        return set(_names(setting))
    return {name for entry in setting.split(";") for name in _names(entry.partition("=")[2])}


def approvers_of(setting: str, model: str) -> list[str]:
    """The designated approvers of a registered model (`<tenant>.<use case>`)."""
    return names_for(setting, model.split(".", 1)[0])


def _names(comma_separated: str) -> list[str]:
    return [name.strip() for name in comma_separated.split(",") if name.strip()]
