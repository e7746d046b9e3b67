"""The packed plugin, run by the dify_plugin SDK's own classes against a live memory-service.

Started by the repository's tests/test_dify_plugin.py, with the unpacked .difypkg as the working
directory (as the plugin daemon runs it) and the service's URL and keys in the environment.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from dify_plugin import DifyPluginEnv
from dify_plugin.core.entities.plugin.setup import PluginConfiguration
from dify_plugin.core.plugin_registration import PluginRegistration
from dify_plugin.core.runtime import Session
from dify_plugin.entities.tool import ToolInvokeMessage, ToolProviderConfiguration, ToolRuntime
from dify_plugin.errors.tool import ToolProviderCredentialValidationError
from jsonschema import Draft202012Validator

from memory_service.client import MemoryServiceClient

URL = os.environ["MEMORY_SERVICE_URL"]
KEY = os.environ["MEMORY_SERVICE_KEY"]
OTHER_KEY = os.environ["MEMORY_SERVICE_OTHER_KEY"]
TOOLS = [
    "memory_add",
    "memory_get",
    "memory_get_all",
    "memory_delete",
    "storage_set",
    "storage_get",
    "storage_exist",
    "storage_delete",
    "storage_list",
]
T = ToolInvokeMessage.MessageType


@pytest.fixture(scope="session")
def registration() -> PluginRegistration:
    assert Path("manifest.yaml").exists(), "run from the unpacked plugin"
    return PluginRegistration(DifyPluginEnv())


def credentials(key: str = KEY, url: str = URL) -> dict[str, str]:
    return {"service_url": url, "api_key": key}


def make_tool(registration: PluginRegistration, name: str, key: str = KEY):  # noqa: ANN201
    cls = registration.get_tool_cls("memory_service", name)
    assert cls is not None, name
    runtime = ToolRuntime(credentials=credentials(key), user_id="u1", session_id=None)
    return cls(runtime=runtime, session=Session.empty_session())


def output_schema(name: str) -> dict[str, Any]:
    return yaml.safe_load(Path(f"tools/{name}.yaml").read_text())["output_schema"]


def merged(messages: list[ToolInvokeMessage]) -> dict[str, Any]:
    """Variables as a workflow node sees them: a value replaces, a streamed chunk appends."""
    out: dict[str, Any] = {}
    for x in messages:
        if x.type == T.VARIABLE:
            v = x.message
            if v.stream:
                assert isinstance(v.variable_value, str)
                out[v.variable_name] = out.get(v.variable_name, "") + v.variable_value
            else:
                out[v.variable_name] = v.variable_value
    return out


def run(registration: PluginRegistration, name: str, params: dict, key: str = KEY) -> list:
    messages = list(make_tool(registration, name, key).invoke(dict(params)))
    assert all(isinstance(x, ToolInvokeMessage) for x in messages)
    variables = merged(messages)
    # every declared variable, and nothing else, valid against the tool's output_schema
    Draft202012Validator(output_schema(name)).validate(variables)
    assert set(variables) == set(output_schema(name)["properties"])
    assert messages[0].type == T.TEXT and messages[0].message.text
    return messages


def of(messages: list, kind: ToolInvokeMessage.MessageType) -> list:
    return [x.message for x in messages if x.type == kind]


# --- the package as the SDK reads it -------------------------------------------------------------


def test_manifests_load_with_the_sdk_entities(registration: PluginRegistration) -> None:
    manifest = PluginConfiguration(**yaml.safe_load(Path("manifest.yaml").read_text()))
    assert manifest.name == "memory_service" and manifest.plugins.tools == [
        "provider/memory_service.yaml"
    ]
    provider = ToolProviderConfiguration(
        **yaml.safe_load(Path("provider/memory_service.yaml").read_text())
    )
    assert provider.identity.label.en_US == "Memory Service"
    assert [c.name for c in provider.credentials_schema] == ["service_url", "api_key"]
    assert [c.type.value for c in provider.credentials_schema] == ["text-input", "secret-input"]
    assert [t.identity.name for t in provider.tools] == TOOLS
    for tool in provider.tools:
        assert tool.identity.label.zh_Hans and tool.identity.label.ja_JP
        assert tool.output_schema == output_schema(tool.identity.name)
        assert tool.extra.python.source == f"tools/{tool.identity.name}.py"
    # the registration the daemon does: every class found, one per module
    assert registration.get_tool_provider_cls("memory_service").__name__ == "MemoryServiceProvider"
    for name in TOOLS:
        assert registration.get_tool_cls("memory_service", name).tool_name == name
    assert [f.filename for f in registration.files] == ["icon.svg"]


# --- credentials ---------------------------------------------------------------------------------


def test_good_credentials_are_accepted(registration: PluginRegistration) -> None:
    provider = registration.get_tool_provider_cls("memory_service")()
    provider.validate_credentials(credentials())
    provider.validate_credentials(credentials(url=URL + "/"))  # a trailing slash is fine


@pytest.mark.parametrize(
    ("creds", "why"),
    [
        (credentials(key="msk_wrong"), "the service refused the API key"),
        (credentials(key=""), "an API key is required"),
        (credentials(url="ftp://example.com"), "must be an http:// or https:// URL"),
        (credentials(url="not a url"), "must be an http:// or https:// URL"),
        (credentials(url="http://127.0.0.1:9"), "cannot reach the service"),
    ],
    ids=["wrong key", "no key", "other scheme", "no url", "nothing listening"],
)
def test_bad_credentials_are_refused_with_the_reason(
    registration: PluginRegistration, creds: dict, why: str
) -> None:
    provider = registration.get_tool_provider_cls("memory_service")()
    with pytest.raises(ToolProviderCredentialValidationError, match=why):
        provider.validate_credentials(creds)


# --- every tool ----------------------------------------------------------------------------------


def test_memory_add(registration: PluginRegistration) -> None:
    params = {"conversationId": "dify-1", "role": "user", "content": "hi 🙂", "blockId": None}
    messages = run(registration, "memory_add", params)
    assert [x.type for x in messages] == [T.TEXT, T.JSON] + [T.VARIABLE] * 4
    assert of(messages, T.TEXT)[0].text == "Added 1 user message to dify-1/default (1 in all)."
    variables = merged(messages)
    assert variables["memory"]["data"] == [{"role": "user", "content": "hi 🙂", "seq": 0}]
    assert variables["key"] == "dify-1:default" and variables["message_count"] == 1
    assert of(messages, T.JSON)[0].json_object["memories"] == [variables["memory"]]


def _conversation(key: str = KEY) -> None:
    with MemoryServiceClient(URL, key) as ms:
        ms.memory.delete(conversation_id="dify-read")
        ms.memory.add("dify-read", "system", "be brief", block_id="b1", block_name="notes")
        ms.memory.add("dify-read", "user", "hello\nthere", block_id="b1")
        ms.memory.add("dify-read", "assistant", "hi", block_id="b1")


def test_memory_get_streams_the_transcript(registration: PluginRegistration) -> None:
    _conversation()
    messages = run(
        registration, "memory_get", {"conversationId": "dify-read", "blockId": "b1", "lastN": ""}
    )
    assert of(messages, T.TEXT)[0].text == "Found 1 memory."
    chunks = [x for x in of(messages, T.VARIABLE) if x.stream]
    assert [c.variable_name for c in chunks] == ["transcript"] * 3  # one chunk per message
    assert merged(messages)["transcript"] == "system: be brief\nuser: hello\nthere\nassistant: hi\n"
    assert merged(messages)["count"] == 1
    windowed = run(
        registration,
        "memory_get",
        {"conversationId": "dify-read", "lastN": 1, "keepSystem": True},
    )
    assert merged(windowed)["transcript"] == "system: be brief\nassistant: hi\n"


def test_memory_get_all_pages(registration: PluginRegistration) -> None:
    _conversation()
    first = run(registration, "memory_get_all", {"limit": 1})
    assert merged(first)["count"] == 1 and merged(first)["next_cursor"]


def test_memory_delete(registration: PluginRegistration) -> None:
    _conversation()
    dry = run(registration, "memory_delete", {"blockName": "notes", "dryRun": True})
    assert merged(dry)["deleted_count"] == 1 and merged(dry)["dry_run"] is True
    done = run(registration, "memory_delete", {"blockName": "notes"})
    assert merged(done)["deleted_count"] == 1 and merged(done)["dry_run"] is False
    assert of(done, T.TEXT)[0].text.startswith("Deleted 1 memory")


def test_storage_set_get_exist_delete_list(registration: PluginRegistration) -> None:
    data = bytes(range(256))
    put = run(
        registration,
        "storage_set",
        {
            "key": "dify/file.bin",
            "value_base64": base64.b64encode(data).decode(),
            "content_type": "image/png",
            "ttl": None,
        },
    )
    assert merged(put)["value_size"] == 256 and merged(put)["expires_at"] is None
    got = run(registration, "storage_get", {"key": "dify/file.bin"})
    (blob,) = [x for x in got if x.type == T.BLOB]
    assert blob.message.blob == data  # byte for byte
    assert blob.meta == {"mime_type": "image/png", "filename": "file.bin"}
    assert merged(got)["value_text"] is None and merged(got)["content_type"] == "image/png"
    run(registration, "storage_set", {"key": "dify/note", "value": "plain text"})
    text = run(registration, "storage_get", {"key": "dify/note"})
    assert merged(text)["value_text"] == "plain text"
    assert [x.meta["mime_type"] for x in text if x.type == T.BLOB] == ["text/plain; charset=utf-8"]
    exists = run(registration, "storage_exist", {"key": "dify/note"})
    assert merged(exists) == {"key": "dify/note", "exists": True}
    listed = run(registration, "storage_list", {"prefix": "dify/", "limit": 10})
    assert merged(listed)["keys"] == ["dify/file.bin", "dify/note"]
    gone = run(registration, "storage_delete", {"key": "dify/note"})
    assert merged(gone)["deleted"] is True
    again = run(registration, "storage_exist", {"key": "dify/note"})
    assert merged(again)["exists"] is False


# --- failures and the workspace boundary ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "code"),
    [
        ("memory_get", {}, "missing_filter"),  # refused before the stream
        (
            "memory_add",
            {"conversationId": "c", "role": "robot", "content": "x"},
            "invalid_parameter",
        ),
        ("storage_get", {"key": "dify/absent"}, "key_not_found"),  # fails inside the stream
    ],
)
def test_a_refused_call_fails_with_the_service_message_and_code(
    registration: PluginRegistration, name: str, params: dict, code: str
) -> None:
    tool = make_tool(registration, name)
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the plugin's own error type below
        list(tool.invoke(dict(params)))
    assert type(caught.value).__name__ == "ServiceToolError"
    assert caught.value.code == code and str(caught.value).endswith(f"({code})")


def test_an_unreachable_service_fails_the_call_with_the_reason(
    registration: PluginRegistration,
) -> None:
    cls = registration.get_tool_cls("memory_service", "storage_exist")
    runtime = ToolRuntime(
        credentials=credentials(url="http://127.0.0.1:9"), user_id="u1", session_id=None
    )
    tool = cls(runtime=runtime, session=Session.empty_session())
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the plugin's own error type below
        list(tool.invoke({"key": "k"}))
    assert type(caught.value).__name__ == "ServiceToolError"
    assert caught.value.code == "unreachable"
    assert caught.value.message.startswith("cannot reach the service")


def test_a_second_workspace_sees_nothing(registration: PluginRegistration) -> None:
    _conversation()
    run(registration, "storage_set", {"key": "dify/secret", "value": "s"})
    got = run(registration, "memory_get", {"conversationId": "dify-read"}, key=OTHER_KEY)
    assert merged(got)["count"] == 0 and merged(got)["transcript"] == ""
    exists = run(registration, "storage_exist", {"key": "dify/secret"}, key=OTHER_KEY)
    assert merged(exists)["exists"] is False
