"""Rackwave Platform API source for dlt: leads and contacts, incremental, merged on id."""

from rackwave_source.exceptions import (
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
from rackwave_source.settings import RESOURCE_NAMES as RESOURCES
from rackwave_source.source import rackwave_source

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
