"""Every message pickles through the cached-names state (messages/fastpickle.py), round-trips
unchanged, and stays interchangeable with the stock dataclass state in both directions."""
import dataclasses
import importlib
import pickle
import pkgutil

import pytest

import messages

MODULES = [importlib.import_module(f"messages.{m.name}")
           for m in pkgutil.iter_modules(messages.__path__)]
CLASSES = sorted({obj for mod in MODULES for obj in vars(mod).values()
                  if isinstance(obj, type) and obj.__module__ == mod.__name__
                  and dataclasses.is_dataclass(obj)
                  and obj.__dataclass_params__.frozen and hasattr(obj, "__slots__")},
                 key=lambda c: c.__qualname__)


def sample(cls):
    """An instance with a distinct value in every field (constructors' checks bypassed)."""
    obj = object.__new__(cls)
    for i, f in enumerate(dataclasses.fields(cls)):
        object.__setattr__(obj, f.name, (f.name, i))
    return obj


def test_every_frozen_slotted_message_uses_the_fast_state():
    assert len(CLASSES) > 50
    slow = [c.__qualname__ for c in CLASSES
            if c.__getstate__ is dataclasses._dataclass_getstate]
    assert slow == []


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_round_trip_and_compatibility_with_the_stock_state(cls):
    obj = sample(cls)
    back = pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
    assert type(back) is cls and back == obj
    stock = dataclasses._dataclass_getstate(obj)
    assert obj.__getstate__() == stock                  # same state, so the same bytes
    twin = object.__new__(cls)
    dataclasses._dataclass_setstate(twin, obj.__getstate__())
    assert twin == obj
    twin = object.__new__(cls)
    twin.__setstate__(stock)
    assert twin == obj
