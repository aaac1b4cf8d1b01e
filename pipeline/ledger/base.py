"""The declarative base every ledger table derives from."""

from sqlalchemy.orm import DeclarativeBase


class ModelBase(DeclarativeBase):
    """Base for the ledger's typed models; ``ModelBase.metadata`` is the whole schema."""
