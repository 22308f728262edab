"""A large read-only value built once in the driver and read by every task: under Ray it travels as one object in
the object store (put once, on the first task that takes it; each worker reads its numpy arrays without a copy),
in a run without Ray (small inputs, tests) it is the value itself. A stage holds a `Shared` instead of the value,
and a transform's `setup()` calls `get()` once per worker process."""

from __future__ import annotations


class Shared:
    def __init__(self, value):
        self._value = value
        self._ref = None

    def get(self):
        if self._value is None:
            import ray

            self._value = ray.get(self._ref)
        return self._value

    def __getstate__(self):
        import ray

        if not ray.is_initialized():  # pickled outside Ray (a test, a process pool): the value itself
            return {"value": self._value, "ref": None}
        if self._ref is None:
            self._ref = ray.put(self._value)
        return {"value": None, "ref": self._ref}

    def __setstate__(self, state):
        self._value, self._ref = state["value"], state["ref"]
