from __future__ import annotations

from shared.settings import ServiceSettings


class TenantServiceSettings(ServiceSettings):
    """The tenant service's environment settings: the connections and the admin token, nothing
    of its own. (Named apart from shared.tenancy.TenantSettings, an organization's settings.)"""
