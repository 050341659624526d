"""Test doubles, loopback servers and a fault-injecting provider for apps built on robustprompt."""

from robustprompt.testing._doubles import FunctionModel, ScriptedModel
from robustprompt.testing._faults import Fault, FaultPlan, FaultServer, answer_from
from robustprompt.testing._openai_server import OpenAIServer
from robustprompt.testing._server import LoopbackServer, Received, Reply

__all__ = [
    "Fault",
    "FaultPlan",
    "FaultServer",
    "FunctionModel",
    "LoopbackServer",
    "OpenAIServer",
    "Received",
    "Reply",
    "ScriptedModel",
    "answer_from",
]
