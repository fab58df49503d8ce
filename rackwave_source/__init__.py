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
    ScanIncomplete,
    SchemaContractError,
    ServerError,
    TLSVerificationError,
    UnexpectedResponseError,
    ValidationError,
    WarehouseUnavailableError,
)
from .settings import RESOURCE_NAMES as RESOURCES
from .source import rackwave_source

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
    "ScanIncomplete",
    "SchemaContractError",
    "ServerError",
    "TLSVerificationError",
    "UnexpectedResponseError",
    "ValidationError",
    "WarehouseUnavailableError",
    "rackwave_source",
]
