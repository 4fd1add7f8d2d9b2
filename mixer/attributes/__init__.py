"""Attribute bags: the typed values every request is turned into before rules see it."""

from mixer.attributes.bag import Bag, StringMap, Value

__all__ = ["Bag", "StringMap", "Value"]
