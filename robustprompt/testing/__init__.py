"""Test doubles and loopback servers for apps built on robustprompt."""

from robustprompt.testing._doubles import FunctionModel, ScriptedModel
from robustprompt.testing._openai_server import OpenAIServer, Received, Reply

__all__ = ["FunctionModel", "OpenAIServer", "Received", "Reply", "ScriptedModel"]
