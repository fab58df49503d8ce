"""Rackwave Platform API source for dlt: leads and contacts, incremental, merged on id."""

from .exceptions import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ForbiddenError,
    NotFoundError,
    RackwaveError,
    RackwaveFatalError,
    RackwaveTransientError,
    RateLimitError,
    SchemaContractError,
    ServerError,
    TLSVerificationError,
    UnexpectedResponseError,
    ValidationError,
    WarehouseUnavailableError,
)
from .source import rackwave_source

RESOURCES = ("leads", "contacts")

__all__ = [
    "RESOURCES",
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ForbiddenError",
    "NotFoundError",
    "RackwaveError",
    "RackwaveFatalError",
    "RackwaveTransientError",
    "RateLimitError",
    "SchemaContractError",
    "ServerError",
    "TLSVerificationError",
    "UnexpectedResponseError",
    "ValidationError",
    "WarehouseUnavailableError",
    "rackwave_source",
]
