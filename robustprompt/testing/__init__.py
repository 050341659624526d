"""Test doubles and loopback servers for apps built on robustprompt."""

from robustprompt.testing._doubles import FunctionModel, ScriptedModel
from robustprompt.testing._openai_server import OpenAIServer
from robustprompt.testing._server import LoopbackServer, Received, Reply

__all__ = ["FunctionModel", "LoopbackServer", "OpenAIServer", "Received", "Reply", "ScriptedModel"]
