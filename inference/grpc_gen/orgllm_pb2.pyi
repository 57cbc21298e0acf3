from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RunInferenceRequest(_message.Message):
    __slots__ = ("org_id", "model_id", "session_id", "seq_no", "data", "parameters", "frame_ptr", "ts")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_NO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    FRAME_PTR_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    model_id: str
    session_id: str
    seq_no: int
    data: str
    parameters: str
    frame_ptr: bytes
    ts: float
    def __init__(self, org_id: _Optional[str] = ..., model_id: _Optional[str] = ..., session_id: _Optional[str] = ..., seq_no: _Optional[int] = ..., data: _Optional[str] = ..., parameters: _Optional[str] = ..., frame_ptr: _Optional[bytes] = ..., ts: _Optional[float] = ...) -> None: ...

class RunInferenceResponse(_message.Message):
    __slots__ = ("session_id", "seq_no", "data", "usage", "ts")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_NO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    seq_no: int
    data: str
    usage: str
    ts: float
    def __init__(self, session_id: _Optional[str] = ..., seq_no: _Optional[int] = ..., data: _Optional[str] = ..., usage: _Optional[str] = ..., ts: _Optional[float] = ...) -> None: ...
