"""The shipped models. A package only so that the wheel ships them (as ``idsvc.models``)."""
