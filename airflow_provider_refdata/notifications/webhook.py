"""ReferenceHealthNotifier: send reference-data health alerts to a chat webhook as one JSON ``POST``.

An Airflow notifier (``airflow.sdk.BaseNotifier``), so it works as a callback and as a notifier the health
operator calls with its alerts::

    notifier = ReferenceHealthNotifier(webhook_conn_id="refdata_health_webhook", payload_format="wecom")
    ReferenceHealthOperator(task_id="health", notifiers=[notifier])        # one message per check with alerts
    PythonOperator(..., on_failure_callback=notifier)                      # "task … failed: <exception>"

**The target** is either ``webhook_url`` (templated, e.g. ``{{ var.value.refdata_webhook }}``) or an
HTTP-style connection (``webhook_conn_id``) read as ``HttpHook`` reads one: ``host`` is the base URL, or the
host name with ``schema`` as the scheme (default ``http``) and ``port``; ``endpoint`` (argument or extra)
is appended.  Extras: ``token_param`` puts the connection's *password* into that query parameter (WeCom
``key``, DingTalk ``access_token``), so the secret lives in the masked password field; without it a login
and password are sent as HTTP basic auth; ``payload_format`` and ``timeout`` are the defaults of those
arguments (so one DAG serves any chat tool); every other extra is an HTTP header.  The URL is registered with
the secrets masker and never logged or put into an error: messages name only ``scheme://host:port``.

**The body** is ``payload`` (a templated dict) or the preset of ``payload_format``:

========== ================================================================ ======================
format     body                                                             default size limit
========== ================================================================ ======================
text       ``{"text": msg}`` (Slack, Mattermost, Rocket.Chat, Google Chat)  3,900 bytes
wecom      ``{"msgtype": "text", "text": {"content": msg}}`` (企业微信)     2,000 bytes
dingtalk   ``{"msgtype": "text", "text": {"content": msg}}`` (钉钉)         18,000 bytes
feishu     ``{"msg_type": "text", "content": {"text": msg}}`` (飞书)        18,000 bytes
========== ================================================================ ======================

``msg`` is ``message`` (a Jinja template) when given, else the alerts (title, then one line per alert,
``fail`` first, cut at whole lines to the size limit), or, without alerts (a callback), the task and its
outcome.  Templates see the task context plus ``refdata_alerts`` (list of
:class:`~airflow_provider_refdata.results.Alert`), ``refdata_health`` (list of
:class:`~airflow_provider_refdata.results.TableHealth`) and ``refdata_message`` (the message), so a custom
``payload`` writes ``{"content": "{{ refdata_message }}"}``.  As a callback of a
:class:`~airflow_provider_refdata.operators.health.ReferenceHealthOperator` the alerts are read from the
task's XCom.  A response other than 2xx, or a JSON body with a non-zero ``errcode`` (WeCom, DingTalk) or
``code`` (Feishu), raises :class:`RefdataNotifyError`.
"""

from __future__ import annotations

import base64
import copy
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from airflow.sdk import BaseNotifier

from airflow_provider_refdata.exceptions import RefdataNotifyError
from airflow_provider_refdata.notifications.text import alerts_message, fit_lines

PAYLOAD_FORMATS = ("text", "wecom", "dingtalk", "feishu")
DEFAULT_MAX_BYTES = {"text": 3900, "wecom": 2000, "dingtalk": 18000, "feishu": 18000}
#: Extras of the connection that configure the notifier instead of being sent as headers.
RESERVED_EXTRAS = ("endpoint", "token_param", "payload_format", "timeout")


def safe_target(url: str) -> str:
    """``scheme://host:port`` of ``url``: no user, password, path or query (a webhook's secret is there).

    :param url: the webhook URL.
    """
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or '?'}://{host}{port}"


def preset_payload(payload_format: str, message: str) -> dict[str, Any]:
    """The JSON body of ``payload_format`` carrying ``message``.

    :param payload_format: one of :data:`PAYLOAD_FORMATS`.
    :param message: the text.
    """
    if payload_format == "text":
        return {"text": message}
    if payload_format in ("wecom", "dingtalk"):
        return {"msgtype": "text", "text": {"content": message}}
    if payload_format == "feishu":
        return {"msg_type": "text", "content": {"text": message}}
    raise ValueError(f"payload_format must be one of {', '.join(PAYLOAD_FORMATS)}, got {payload_format!r}")


class ReferenceHealthNotifier(BaseNotifier):
    """Post the health alerts (or a task's outcome) to a webhook; see the module docstring.

    :param webhook_conn_id: an HTTP-style Airflow connection of the webhook.
    :param webhook_url: the webhook URL itself (templated); give this or ``webhook_conn_id``.
    :param endpoint: path (and query) appended to the connection's base URL (templated).
    :param payload_format: ``text``, ``wecom``, ``dingtalk`` or ``feishu`` (ignored with ``payload``);
        default the connection's ``payload_format`` extra, else ``text``.
    :param payload: the JSON body as a dict of templates (templated), replacing the preset.
    :param message: the text as a Jinja template (default: the alerts, or the task's outcome).
    :param headers: extra HTTP headers (templated); they win over the connection's.
    :param timeout: seconds to wait for the webhook; default the connection's ``timeout`` extra, else 10.
    :param max_bytes: cut the default message to this many UTF-8 bytes (default: the format's limit).
    :param missing_connection: ``fail`` (default) or ``warn``: what to do when ``webhook_conn_id`` is not
        defined (``warn`` logs and sends nothing, for example DAGs that work before a webhook is set up).
    """

    template_fields: Sequence[str] = ("webhook_url", "endpoint", "payload", "headers")

    def __init__(
        self,
        *,
        webhook_conn_id: str | None = None,
        webhook_url: str | None = None,
        endpoint: str | None = None,
        payload_format: str | None = None,
        payload: Mapping[str, Any] | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
        missing_connection: str = "fail",
    ) -> None:
        if (webhook_conn_id is None) == (webhook_url is None):
            raise ValueError("give exactly one of webhook_conn_id or webhook_url")
        if payload_format is not None:
            _check_format(payload_format)
        if missing_connection not in ("fail", "warn"):
            raise ValueError(f"missing_connection must be 'fail' or 'warn', got {missing_connection!r}")
        self.webhook_conn_id = webhook_conn_id
        self.webhook_url = webhook_url
        self.endpoint = endpoint
        self.payload_format = payload_format
        self.payload = dict(payload) if payload is not None else None
        self.message = message
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.missing_connection = missing_connection
        super().__init__()

    # ----------------------------------------------------------------------------------------------------

    def __call__(self, *args: Any) -> None:
        """Send one message (``args``: the context, or the four positional arguments ``BaseNotifier`` takes)."""
        if len(args) == 1:
            context = dict(args[0])
        else:  # the positional form BaseNotifier also accepts
            context = dict(zip(("dag", "task_list", "blocking_task_list", "blocking_tis"), args, strict=False))
        alerts = context.get("refdata_alerts")
        if alerts is None:
            alerts = self._alerts_from_xcom(context)
        context["refdata_alerts"] = list(alerts)
        context["refdata_health"] = list(context.get("refdata_health") or [])
        # BaseNotifier renders the template fields in place, irreversibly: send from a copy, so that the same
        # notifier object can send again (a callback after the operator called it) from its templates.
        sending = copy.copy(self)
        sending._connection = None
        if self.webhook_conn_id is not None:
            sending._connection = self._get_connection()
            if sending._connection is None:
                return None
            extra = sending._connection.extra_dejson or {}
            if sending.payload_format is None and extra.get("payload_format"):
                sending.payload_format = _check_format(str(extra["payload_format"]))
            if sending.timeout is None and extra.get("timeout"):
                sending.timeout = float(extra["timeout"])
        sending.payload_format = sending.payload_format or "text"
        sending.timeout = sending.timeout or 10.0
        context["refdata_message"] = sending._message(context)
        return BaseNotifier.__call__(sending, context)

    def notify(self, context: Any) -> None:
        """Post the message (called by ``__call__`` with the template fields rendered)."""
        url, headers = self._target()
        body = self.payload
        if body is None:
            body = preset_payload(self.payload_format, context["refdata_message"])
        self.post(url, body, headers)

    def post(self, url: str, body: Any, headers: Mapping[str, str]) -> None:
        """``POST`` ``body`` as JSON to ``url``; raise :class:`RefdataNotifyError` unless it was accepted.

        :param url: the webhook URL (never logged).
        :param body: the JSON body.
        :param headers: HTTP headers.
        """
        where = safe_target(url)
        data = json.dumps(body, ensure_ascii=False).encode()
        for name, value in headers.items():
            if not str(value).isascii():  # HTTP/1.1 header values are bytes; never guess an encoding
                raise RefdataNotifyError(f"header {name} of webhook {where} must be ASCII text", target=where)
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json; charset=utf-8", **headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # http(s) only: checked in _target
                status, answer = response.status, response.read(4096)
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode(errors="replace").strip()
            raise RefdataNotifyError(
                f"webhook {where} refused the message: HTTP {exc.code}" + (f": {detail}" if detail else ""),
                target=where,
                status=exc.code,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RefdataNotifyError(f"cannot reach webhook {where}: {reason}", target=where) from None
        problem = _answer_problem(answer)
        if problem:
            raise RefdataNotifyError(f"webhook {where} refused the message: {problem}", target=where, status=status)
        self.log.info("Sent %d bytes to webhook %s (HTTP %s)", len(data), where, status)

    # ----------------------------------------------------------------------------------------------------

    def _message(self, context: dict[str, Any]) -> str:
        if self.message is not None:
            return self.render_template(self.message, context, self.get_template_env(dag=context.get("dag")))
        limit = self.max_bytes if self.max_bytes is not None else DEFAULT_MAX_BYTES[self.payload_format]
        where = _where(context)
        if context["refdata_alerts"]:
            return alerts_message(context["refdata_alerts"], where, max_bytes=limit)
        return fit_lines(_outcome_lines(context, where), limit)

    def _alerts_from_xcom(self, context: dict[str, Any]) -> list[Any]:
        """The alerts a health operator stored before failing (a callback of that task); else none."""
        task, ti = context.get("task"), context.get("ti") or context.get("task_instance")
        key = getattr(task, "alerts_xcom_key", None)
        if not key or ti is None:
            return []
        try:
            return list(ti.xcom_pull(task_ids=ti.task_id, key=key) or [])
        except Exception as exc:  # a callback must still report the outcome when the XCom cannot be read
            self.log.warning("Could not read the alerts of %s from XCom: %s", ti.task_id, exc)
            return []

    def _get_connection(self) -> Any:
        """The webhook's connection; ``None`` when it is not defined and ``missing_connection`` is ``warn``."""
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return Connection.get(self.webhook_conn_id)
        except AirflowNotFoundException:
            if self.missing_connection == "warn":
                self.log.warning("Connection %s is not defined: no webhook message sent", self.webhook_conn_id)
                return None
            raise

    def _target(self) -> tuple[str, dict[str, str]]:
        """(url, headers) of the webhook (``webhook_url`` rendered, or the connection read by ``__call__``)."""
        from airflow.sdk.log import mask_secret

        if self.webhook_url is not None:
            url, headers = str(self.webhook_url).strip(), {}
        else:
            url, headers = connection_url(self._connection, self.endpoint)
        if urlsplit(url).scheme not in ("http", "https"):
            raise RefdataNotifyError(f"the webhook URL must be http(s)://…, got {safe_target(url)}")
        mask_secret(url)
        for _name, value in parse_qsl(urlsplit(url).query):
            if len(value) >= 6:  # tokens; short values (msgtype=text) would mask ordinary words in the log
                mask_secret(value)
        return url, {**headers, **{str(k): str(v) for k, v in self.headers.items()}}


def connection_url(conn: Any, endpoint: str | None = None) -> tuple[str, dict[str, str]]:
    """(url, headers) of an HTTP-style connection, read as the module docstring says.

    :param conn: an Airflow ``Connection`` (``host``, ``schema``, ``port``, ``login``, ``password``,
        ``extra_dejson``).
    :param endpoint: appended to the base URL; default the ``endpoint`` extra.
    """
    extra = dict(conn.extra_dejson or {})
    host = (conn.host or "").strip()
    if not host:
        raise RefdataNotifyError(f"connection {conn.conn_id} has no host (the webhook's base URL)")
    base = host if "://" in host else f"{conn.schema or 'http'}://{host}"
    parts = urlsplit(base)
    if conn.port and parts.port is None:
        parts = parts._replace(netloc=f"{parts.netloc}:{conn.port}")
    path = endpoint if endpoint is not None else extra.get("endpoint")
    if path:
        extra_parts = urlsplit(str(path))
        joined = parts.path.rstrip("/") + "/" + extra_parts.path.lstrip("/")
        query = "&".join(q for q in (parts.query, extra_parts.query) if q)
        parts = parts._replace(path=joined, query=query)
    headers = {str(k): str(v) for k, v in extra.items() if k not in RESERVED_EXTRAS}
    token_param = extra.get("token_param")
    if token_param:
        if not conn.password:
            raise RefdataNotifyError(f"connection {conn.conn_id} names token_param but has no password (the token)")
        query = parse_qsl(parts.query, keep_blank_values=True) + [(str(token_param), conn.password)]
        parts = parts._replace(query=urlencode(query))
    elif conn.login and conn.password:
        token = base64.b64encode(f"{conn.login}:{conn.password}".encode()).decode()
        headers.setdefault("Authorization", f"Basic {token}")
    return urlunsplit(parts), headers


def _check_format(payload_format: str) -> str:
    if payload_format not in PAYLOAD_FORMATS:
        raise ValueError(f"payload_format must be one of {', '.join(PAYLOAD_FORMATS)}, got {payload_format!r}")
    return payload_format


def _answer_problem(answer: bytes) -> str | None:
    """The error a chat API reports in a 200 answer (``errcode``/``code`` not 0), else ``None``."""
    try:
        body = json.loads(answer)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for field in ("errcode", "code"):
        code = body.get(field)
        if code not in (None, 0, "0"):
            text = body.get("errmsg") or body.get("msg") or ""
            return f"{field} {code}" + (f": {text}" if text else "")
    return None


def _where(context: Mapping[str, Any]) -> str | None:
    """``dag_id.task_id`` of the context (``dag_id`` for a DAG-level callback)."""
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None)
    task_id = getattr(ti, "task_id", None)
    if dag_id and task_id:
        return f"{dag_id}.{task_id}"
    return dag_id or task_id


def _outcome_lines(context: Mapping[str, Any], where: str | None) -> list[str]:
    """A callback's message: what ran, how it ended, and the exception's first line."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    run_id = getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None)
    exception = context.get("exception")
    state = getattr(ti, "state", None) or getattr(dag_run, "state", None)
    outcome = "failed" if exception is not None else (str(getattr(state, "value", state)) if state else "finished")
    lines = [f"Airflow {where or 'task'}{f' (run {run_id})' if run_id else ''}: {outcome}"]
    if context.get("reason"):
        lines.append(f"reason: {context['reason']}")
    if exception is not None:
        first = next((line.strip() for line in str(exception).splitlines() if line.strip()), "")
        lines.append(f"{type(exception).__name__}: {first}" if first else type(exception).__name__)
    return lines
