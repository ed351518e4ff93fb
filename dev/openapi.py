#!/usr/bin/env python3
"""The OpenAPI 3.1 document of exotel-voicebot's HTTP API, printed as JSON.

src/routes/openapi.json is this program's output, checked in and built into the binary
(GET /openapi.json): `python3 dev/openapi.py > src/routes/openapi.json` after a change here.
CI checks that the two agree; routes::tests holds the document to the router both ways, and
dev/contract runs schemathesis against a server with it.

Written as a program rather than as JSON because JSON Schema repeats itself (the number's
pattern, the error responses, each kind of agent's fields); the schemas say what the server's
own checks take, exactly, so that schema-valid input is accepted and other input refused.
"""
import json
E164 = r"^(\+910?[1-9][0-9]{9}|\+9[02-9][0-9]{6,13}|\+[1-8][0-9]{7,14}|[6-9][0-9]{9}|0[1-9][0-9]{9})$"
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
def rresp(n): return {"$ref": f"#/components/responses/{n}"}
def jbody(schema, example=None, required=True):
    c = {"schema": schema}
    if example is not None: c["example"] = example
    return {"required": required, "content": {"application/json": c}}
def ok(desc, schema, status="200", headers=None):
    r = {"description": desc, "content": {"application/json": {"schema": schema}}}
    if headers: r["headers"] = headers
    return {status: r}
def errors(*codes):
    out = {}
    for c in codes: out[str(c)] = rresp({400:"BadRequest",401:"Unauthorized",404:"NotFound",405:"MethodNotAllowed",409:"Conflict",413:"TooLarge",429:"TooMany",503:"Unavailable"}[c])
    out["default"] = rresp("Error")
    return out
USER = [{"bearer": []}]
EXOTEL = [{"webhookSecret": []}, {"webhookBasic": []}, {}]
def op(summary, tag, responses, security=USER, **kw):
    o = {"summary": summary, "tags": [tag], "security": security, "responses": responses}
    o.update(kw); return o
def pparam(name, schema, desc):
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": desc}
def qparam(name, schema, desc):
    if schema.get("type") == "integer":
        schema = {"anyOf": [schema, {"const": ""}]}
        desc += "; empty: not given"
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": desc}
location = {"Location": {"description": "the created resource", "schema": {"type": "string"}}}
number = {"type": "string", "pattern": E164, "description": "E.164 (`+` and 8-15 digits; after +91, 10 digits) or an Indian national number (10 digits from 6-9, or 0 and 10 digits)"}
agent_name = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
call_log_id = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}
variables = {"type": "object", "maxProperties": 32, "propertyNames": {"pattern": "^[A-Za-z0-9_.-]{1,64}$"}, "additionalProperties": {"type": "string", "maxLength": 1024}}
url_pattern = {"type": "string", "pattern": "^wss://[a-z]{1,12}\\.example(:[1-9][0-9]{1,3})?(/[a-z0-9]{0,12})?$", "description": "wss:// (ws:// only to a loopback host); not this server itself, and within RELAY_ALLOWED_HOSTS when set"}
headers_schema = {"type": "object", "maxProperties": 4, "propertyNames": {"pattern": "^X-[A-Za-z0-9]{1,16}$"}, "additionalProperties": {"type": "string", "pattern": "^[A-Za-z0-9 ._-]{0,64}$"}}
handoff = {"type": "string", "enum": ["bot", "always", "never"]}
token = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{0,64}$", "description": "empty: the environment's"}
realtime_props = {"instructions": {"type": "string", "maxLength": 32768}, "voice": token, "model": token, "greeting": {"type": "string", "maxLength": 2048}, "turnDetection": {"type": "string", "enum": ["server_vad", "semantic_vad"]}, "transcriptionModel": token, "apiKey": {"type": "string", "pattern": "^[!-~]{0,512}$", "writeOnly": True, "description": "printable ASCII; empty: OPENAI_API_KEY's"}, "url": url_pattern, "headers": headers_schema, "handoff": handoff}
def agent_kind(kind, props, required, named=True):
    p = {"bot": {"const": kind}, **props}
    if named: p = {"name": agent_name, **p}
    return {"type": "object", "additionalProperties": False, "required": (["name"] if named else []) + ["bot"] + required, "properties": p}
def agent_fields(named):
    return {"oneOf": [
        agent_kind("echo", {"handoff": handoff}, [], named),
        agent_kind("relay", {"url": url_pattern, "headers": headers_schema, "protocol": {"type": "string", "enum": ["exotel", "twilio"]}, "handoff": handoff}, ["url"], named),
        agent_kind("realtime", realtime_props, [], named)]}
schemas = {
 "Error": {"type": "object", "required": ["error", "detail"], "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}},
 "PhoneNumber": number,
 "PlaceCall": {"type": "object", "required": ["to"], "additionalProperties": False, "properties": {
    "to": number, "from": number, "agent": agent_name, "callLogId": call_log_id,
    "timeLimit": {"type": "integer", "minimum": 1, "maximum": 14400}, "timeOut": {"type": "integer", "minimum": 1, "maximum": 3600},
    "record": {"type": "boolean"}, "recordingChannels": {"type": "string", "enum": ["single", "dual"]},
    "statusCallback": {"type": "string", "pattern": "^https://[a-z]{1,12}\\.example/[a-z]{0,12}$", "description": "an http(s) URL"}, "statusCallbackEvents": {"type": "array", "items": {"type": "string", "enum": ["terminal", "answered"]}},
    "statusCallbackContentType": {"type": "string", "enum": ["multipart/form-data", "application/json"]},
    "variables": variables}},
 "Placed": {"type": "object", "required": ["callLogId", "callSid", "status"], "properties": {"callLogId": {"type": "string"}, "callSid": {"type": "string"}, "status": {"type": "string"}}},
 "CallStatus": {"type": "string", "enum": ["queued", "initiated", "connected", "in-progress", "completed", "failed", "busy", "no-answer", "canceled", "interrupted", "rejected-capacity", "bot-unavailable"]},
 "CallRow": {"type": "object", "required": ["callLogId", "direction", "status", "createdAt", "createdAtIso"], "properties": {
    "callLogId": {"type": "string"}, "direction": {"type": "string", "enum": ["outbound", "inbound", "web"]},
    "from": {"type": ["string", "null"]}, "to": {"type": ["string", "null"]}, "callerId": {"type": ["string", "null"]},
    "callSid": {"type": ["string", "null"]}, "streamSid": {"type": ["string", "null"]}, "status": ref("CallStatus"),
    "createdAt": {"type": "integer"}, "createdAtIso": {"type": "string"}, "answeredAt": {"type": ["integer", "null"]}, "answeredAtIso": {"type": ["string", "null"]},
    "endedAt": {"type": ["integer", "null"]}, "endedAtIso": {"type": ["string", "null"]}, "durationS": {"type": ["integer", "null"]}, "endReason": {"type": ["string", "null"]},
    "framesIn": {"type": "integer"}, "bytesIn": {"type": "integer"}, "framesOut": {"type": "integer"}, "bytesOut": {"type": "integer"}, "dtmf": {"type": "string"},
    "recordingPath": {"type": ["string", "null"]}, "exotelRecordingUrl": {"type": ["string", "null"]}, "lastError": {"type": ["string", "null"]},
    "doNotCall": {"type": "boolean"}, "handoff": {"type": ["string", "null"]}, "agent": {"type": ["string", "null"]}, "bot": {"type": ["string", "null"]},
    "history": {"type": "array", "items": {"type": "object", "properties": {"status": {"type": "string"}, "at": {"type": "integer"}, "atIso": {"type": "string"}}}}}},
 "Transcript": {"type": "object", "required": ["callLogId", "turns"], "properties": {"callLogId": {"type": "string"}, "turns": {"type": "array", "items": {"type": "object", "required": ["role", "text", "at", "atIso"], "properties": {"role": {"type": "string", "enum": ["bot", "caller"]}, "text": {"type": "string"}, "at": {"type": "integer"}, "atIso": {"type": "string"}}}}}},
 "PhoneFields": {"type": "object", "additionalProperties": False, "properties": {
    "number": number, "apiKey": {"type": "string", "pattern": "^[!-~]{1,256}$"}, "apiToken": {"type": "string", "pattern": "^[!-~]{1,256}$", "writeOnly": True, "description": "printable ASCII, no spaces"},
    "sid": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}, "subdomain": {"type": "string", "maxLength": 253, "pattern": "^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$", "description": "api.exotel.com, or api.in.exotel.com for Mumbai"}, "apiBaseUrl": {"type": "string", "pattern": "^https://[a-z]{1,12}\\.example$"}, "appId": {"type": "string", "pattern": "^[A-Za-z0-9._-]{0,128}$", "description": "empty: none (stream mode)"},
    "maxConcurrent": {"type": "integer", "minimum": 1, "maximum": 100000}, "agent": {"type": "string", "pattern": "^[A-Za-z0-9_-]{0,64}$"}}},
 "Phone": {"type": "object", "required": ["number", "apiKey", "apiToken", "sid", "mode"], "properties": {"number": {"type": "string"}, "apiKey": {"type": "string"}, "apiToken": {"type": "string", "description": "**** and at most the last four characters"}, "sid": {"type": "string"}, "subdomain": {"type": "string"}, "apiBaseUrl": {"type": ["string", "null"]}, "appId": {"type": ["string", "null"]}, "mode": {"type": "string", "enum": ["applet", "stream"]}, "maxConcurrent": {"type": ["integer", "null"]}, "agent": {"type": ["string", "null"]}}},
 "AgentFieldsAll": {"type": "object", "additionalProperties": False, "properties": {
    "name": agent_name, "bot": {"type": "string", "enum": ["echo", "relay", "realtime"]}, "url": {"type": "string", "description": "ws:// or wss://"},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}}, "handoff": {"type": "string", "enum": ["bot", "always", "never"]},
    "protocol": {"type": "string", "enum": ["exotel", "twilio"]}, "instructions": {"type": "string", "maxLength": 32768}, "voice": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{0,64}$"},
    "model": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{0,64}$"}, "greeting": {"type": "string", "maxLength": 2048}, "turnDetection": {"type": "string", "enum": ["server_vad", "semantic_vad"]},
    "eagerness": {"type": "string", "enum": ["low", "medium", "high", "auto"]}, "transcriptionModel": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{0,64}$"},
    "apiKey": {"type": "string", "maxLength": 512, "writeOnly": True}}},
 "Agent": {"type": "object", "required": ["name", "bot", "handoff"], "properties": {"name": {"type": "string"}, "bot": {"type": "string", "enum": ["echo", "relay", "realtime"]}, "url": {"type": ["string", "null"]}, "headers": {"type": "array", "items": {"type": "string"}}, "handoff": {"type": "string"}, "protocol": {"type": "string"}, "greeting": {}, "model": {"type": "string"}, "instructions": {"type": "string"}, "voice": {"type": "string"}, "turnDetection": {"type": "string"}, "eagerness": {"type": ["string", "null"]}, "transcriptionModel": {"type": "string"}, "apiKey": {"type": ["string", "null"], "description": "**** and, for a key of 16 or more, its last four characters"}}},
 "Contact": {"oneOf": [number, {"type": "object", "required": ["to"], "properties": {"to": number, "params": variables}}]},
 "CampaignFields": {"type": "object", "required": ["contacts"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 200}, "from": number, "agent": agent_name,
    "contacts": {"type": "array", "minItems": 1, "items": ref("Contact")},
    "maxConcurrent": {"type": "integer", "minimum": 1, "maximum": 1000}, "callsPerMinute": {"type": "integer", "minimum": 1, "maximum": 60000},
    "retry": {"type": "object", "additionalProperties": False, "properties": {"on": {"type": "array", "items": {"type": "string", "enum": ["busy", "no-answer", "failed"]}}, "attempts": {"type": "integer", "minimum": 1, "maximum": 10}, "waitSeconds": {"type": "integer", "minimum": 1, "maximum": 604800}}},
    "window": {"type": "object", "additionalProperties": False, "properties": {"start": {"type": "string", "pattern": "^(0[0-9]|1[01]):[0-5][0-9]$", "description": "HH:MM local; the document keeps it before noon and end after it so that start < end, which the server checks"}, "end": {"type": "string", "pattern": "^(1[2-9]|2[0-3]):[0-5][0-9]$"}, "timezone": {"type": "string", "enum": ["Asia/Kolkata", "UTC"]}, "days": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}}}},
    "startAt": {"type": "string", "pattern": "^20[3-9][0-9]-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$"}, "redialUnknown": {"type": "boolean"}}},
 "Campaign": {"type": "object", "required": ["id", "name", "status"], "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "status": {"type": "string", "enum": ["scheduled", "running", "waiting-window", "paused", "completed", "canceled"]}}},
 "Rejected": {"type": "object", "required": ["row", "to", "error"], "properties": {"row": {"type": "integer"}, "to": {"type": "string"}, "error": {"type": "string"}}},
 "Health": {"type": "object", "required": ["status", "activeCalls", "version"], "properties": {"status": {"type": "string", "enum": ["ok", "draining"]}, "activeCalls": {"type": "integer"}, "version": {"type": "string"}}},
 "ConnectParams": {"type": "object", "required": ["CallSid"], "description": "Exotel's fields; a value of another JSON type is read as its text (null as absent)", "properties": {"CallSid": {"type": ["string", "number", "boolean", "object"], "minLength": 1, "pattern": "\\S"}, "CallFrom": {}, "CallTo": {}, "Direction": {}, "CustomField": {}}},
}
responses = {
 "Error": {"description": "an error, named", "content": {"application/json": {"schema": ref("Error")}}},
 "BadRequest": {"description": "the request is not what this operation takes; detail says why", "content": {"application/json": {"schema": ref("Error")}}},
 "Unauthorized": {"description": "no or wrong credentials (API_TOKEN; without one, a client that is not local)", "content": {"application/json": {"schema": ref("Error")}}},
 "NotFound": {"description": "no such resource", "content": {"application/json": {"schema": ref("Error")}}},
 "MethodNotAllowed": {"description": "the path exists; Allow lists its methods", "headers": {"Allow": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": ref("Error")}}},
 "Conflict": {"description": "it exists already", "content": {"application/json": {"schema": ref("Error")}}},
 "TooLarge": {"description": "the body is over its limit", "content": {"application/json": {"schema": ref("Error")}}},
 "TooMany": {"description": "a limit of calls is reached; Retry-After says when to try again", "headers": {"Retry-After": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": ref("Error")}}},
 "Unavailable": {"description": "not now (draining, not configured, a store or Exotel busy)", "content": {"application/json": {"schema": ref("Error")}}},
}
paths = {}
def route(path, **ops):
    paths[path] = ops
route("/call", post=op("Place an outbound call through Exotel", "calls", {**ok("placed; Location is its row", ref("Placed"), headers=location), "502": {"description": "Exotel refused or answered badly", "content": {"application/json": {"schema": ref("Error")}}}, "504": {"description": "Exotel did not answer in EXOTEL_TIMEOUT_MS", "content": {"application/json": {"schema": ref("Error")}}}, **errors(400, 401, 409, 429, 503)},
    requestBody={"required": True, "content": {"application/json": {"schema": ref("PlaceCall"), "example": {"to": "+919876543210", "callLogId": "readme-call-1"}}, "application/x-www-form-urlencoded": {"schema": {"type": "object", "required": ["to"], "additionalProperties": False, "description": "an empty field is not given", "properties": {k: (v if k == "to" else {"anyOf": [v, {"const": ""}]}) for k, v in schemas["PlaceCall"]["properties"].items() if k not in ("variables", "statusCallbackEvents")}}}}}))
day = {"type": "string", "pattern": "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])|-?[0-9]{1,15})?$"}
call_filters = [qparam("status", {"type": "string", "enum": ["", "queued", "initiated", "connected", "in-progress", "completed", "failed", "busy", "no-answer", "canceled", "interrupted", "rejected-capacity", "bot-unavailable"]}, "only this status (empty: any)"), qparam("direction", {"type": "string", "enum": ["", "outbound", "inbound", "web"]}, "only this direction (empty: any)"),
    qparam("number", {"type": "string", "maxLength": 32}, "only calls with this text in a number (from, to, caller id)"), qparam("agent", {"type": "string", "maxLength": 64}, "only this agent's calls"),
    qparam("since", day, "only calls begun on or after this day (YYYY-MM-DD, UTC) or Unix milliseconds"), qparam("until", day, "only calls begun before the end of this day (YYYY-MM-DD, UTC) or before these Unix milliseconds"),
    qparam("id", {"type": "string", "maxLength": 128}, "only the call with this callLogId or CallSid"), qparam("campaign", {"type": "string", "maxLength": 64}, "only the calls this campaign placed")]
route("/calls", get=op("The call log, newest first", "calls", {**ok("a page", {"type": "object", "required": ["calls", "next"], "properties": {"calls": {"type": "array", "items": ref("CallRow")}, "next": {"type": ["string", "null"]}}}), **errors(400, 401)},
    parameters=[qparam("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "rows per page (50)"), qparam("before", {"type": "integer", "minimum": -9223372036854775808, "maximum": 9223372036854775807}, "the previous page's next")] + call_filters))
route("/calls.csv", get=op("The calls of a filter as CSV, newest first (100,000 at most; X-Truncated says when there were more)", "calls", {"200": {"description": "the CSV", "headers": {"X-Truncated": {"schema": {"type": "string", "enum": ["true", "false"]}}}, "content": {"text/csv": {"schema": {"type": "string"}}}}, **errors(400, 401)}, parameters=call_filters))
route("/calls/{callLogId}/recording", get=op("A finished call's recording (RECORD=1), a WAV", "calls", {"200": {"description": "the WAV", "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}, **errors(401, 404, 409, 503)}, parameters=[pparam("callLogId", call_log_id, "the call's id")]))
route("/calls/{callLogId}", get=op("One call with its status history", "calls", {**ok("the row", ref("CallRow")), **errors(401, 404)}, parameters=[pparam("callLogId", call_log_id, "the call's id")]))
route("/calls/{callLogId}/transcript", get=op("A call's transcript, in order", "calls", {**ok("its turns", ref("Transcript")), **errors(401, 404)}, parameters=[pparam("callLogId", call_log_id, "the call's id")]))
numparam = [pparam("number", number, "the phone's number (+ as %2B or as is)")]
route("/phones", get=op("Every phone", "phones", {**ok("the phones", {"type": "object", "required": ["phones"], "properties": {"phones": {"type": "array", "items": ref("Phone")}}}), **errors(401)}),
    post=op("Add a phone with its own Exotel account", "phones", {**ok("created", ref("Phone"), "201", location), **errors(400, 401, 409)},
    requestBody=jbody(dict(json.loads(json.dumps(schemas["PhoneFields"])), required=["number", "apiKey", "apiToken", "sid"]), {"number": "+918047112233", "apiKey": "your-api-key", "apiToken": "your-api-token", "sid": "your-account-sid", "maxConcurrent": 10})))
route("/phones/{number}", get=op("One phone", "phones", {**ok("the phone", ref("Phone")), **errors(401, 404)}, parameters=numparam),
    patch=op("Change a phone", "phones", {**ok("changed", ref("Phone")), **errors(400, 401, 404)}, parameters=numparam, requestBody=jbody({"type": "object", "additionalProperties": False, "properties": {k: v for k, v in schemas["PhoneFields"]["properties"].items() if k != "number"}})),
    delete=op("Remove a phone", "phones", {**ok("removed", {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "string"}}}), **errors(401, 404)}, parameters=numparam))
nameparam = [pparam("name", agent_name, "the agent's name")]
route("/agents", get=op("Every agent", "agents", {**ok("the agents", {"type": "object", "required": ["agents"], "properties": {"agents": {"type": "array", "items": ref("Agent")}}}), **errors(401)}),
    post=op("Add an agent: echo, a relayed bot, or a realtime AI service", "agents", {**ok("created", ref("Agent"), "201", location), **errors(400, 401, 409)},
    requestBody=jbody(agent_fields(True), {"name": "collector", "bot": "realtime", "apiKey": "sk-your-key", "instructions": "Be brief."})))
route("/agents/{name}", get=op("One agent", "agents", {**ok("the agent", ref("Agent")), **errors(401, 404)}, parameters=nameparam),
    patch=op("Change an agent (new calls get it)", "agents", {**ok("changed", ref("Agent")), **errors(400, 401, 404)}, parameters=nameparam, requestBody=jbody(agent_fields(False))),
    delete=op("Remove an agent", "agents", {**ok("removed", {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "string"}}}), **errors(401, 404)}, parameters=nameparam))
route("/agents/{name}/greeting", put=op("Give an echo agent a greeting WAV", "agents", {**ok("the agent", ref("Agent")), **errors(400, 401, 404, 413)}, parameters=nameparam,
    requestBody={"required": True, "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}),
    delete=op("Take the greeting away", "agents", {**ok("the agent", ref("Agent")), **errors(401, 404)}, parameters=nameparam))
web_call = {"type": "object", "required": ["callLogId", "callSid", "media", "sampleRate"], "properties": {"callLogId": {"type": "string"}, "callSid": {"type": "string", "description": "the CallSid the stream's start must carry"}, "media": {"type": "string", "description": "the media WebSocket's path and query on this server"}, "sampleRate": {"type": "integer"}}}
route("/agents/{name}/web-call", post=op("A call from a browser (or any WebSocket client speaking Exotel's stream protocol) to the agent: direction web", "agents", {**ok("its media socket; Location is its row", web_call, "201", location), **errors(401, 404, 429, 503)}, parameters=nameparam))
idparam = [pparam("id", {"type": "string", "minLength": 1}, "the campaign's id")]
created_campaign = {"type": "object", "required": ["id", "name", "status", "total", "rejected"], "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "status": {"type": "string"}, "total": {"type": "integer"}, "rejected": {"type": "array", "items": ref("Rejected")}, "rejectedSummary": {"type": "object"}, "settings": {"type": "object"}}}
route("/campaigns", get=op("Every campaign", "campaigns", {**ok("the campaigns", {"type": "object", "required": ["campaigns"], "properties": {"campaigns": {"type": "array", "items": ref("Campaign")}}}), **errors(401)}),
    post=op("Create a campaign from contacts (JSON) or a CSV file (settings in the query); with dryRun=1, only say what it would be", "campaigns", {**ok("created, with every rejected row", created_campaign, "201", location), **ok("dryRun: what it would be, nothing made", {"type": "object", "required": ["dryRun", "total", "first", "rejected"], "properties": {"dryRun": {"const": True}, "total": {"type": "integer"}, "first": {"type": "array", "items": {"type": "object"}}, "rejected": {"type": "array", "items": ref("Rejected")}}}), **errors(400, 401, 413)},
    parameters=[qparam("dryRun", {"type": "string", "enum": ["", "0", "1", "true", "false"]}, "1: check and preview, make nothing")],
    requestBody={"required": True, "content": {"application/json": {"schema": ref("CampaignFields"), "example": {"name": "reminders-dec", "contacts": ["+919812345678", {"to": "+919876543210", "params": {"name": "Asha"}}], "maxConcurrent": 5, "window": {"start": "09:00", "end": "21:00", "timezone": "Asia/Kolkata"}}}, "text/csv": {"schema": {"type": "string", "pattern": "^to\\n(\\+91[6-9][0-9]{9}\\n){1,5}$"}}}}))
route("/campaigns/{id}", get=op("A campaign's progress", "campaigns", {**ok("its progress", {"type": "object", "required": ["id", "status"], "properties": {"id": {"type": "string"}, "status": {"type": "string"}}}), **errors(401, 404)}, parameters=idparam))
route("/campaigns/{id}/calls", get=op("A campaign's contacts with their last call", "campaigns", {**ok("a page", {"type": "object", "required": ["calls", "next"], "properties": {"calls": {"type": "array", "items": {"type": "object"}}, "next": {"type": ["string", "null"]}}}), **errors(400, 401, 404)},
    parameters=idparam + [qparam("after", {"type": "integer", "minimum": 0, "maximum": 9223372036854775807}, "the previous page's next"), qparam("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "rows per page")]))
route("/campaigns/{id}/calls.csv", get=op("A campaign's results as CSV", "campaigns", {"200": {"description": "the CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}, **errors(401, 404)}, parameters=idparam))
for action in ["pause", "resume", "cancel"]:
    route(f"/campaigns/{{id}}/{action}", post=op(f"{action.capitalize()} a campaign", "campaigns", {**ok("where it stands now", {"type": "object", "required": ["id", "status"], "properties": {"id": {"type": "string"}, "status": {"type": "string"}}}), **errors(401, 404, 409)}, parameters=idparam))
route("/dnc", get=op("The do-not-call list", "dnc", {**ok("its numbers", {"type": "object", "required": ["count", "numbers"], "properties": {"count": {"type": "integer"}, "numbers": {"type": "array", "items": {"type": "string"}}}}), **errors(401)}),
    post=op("Add numbers (a JSON list, or CSV with the number in the first column)", "dnc", {**ok("what was added", {"type": "object", "required": ["added", "alreadyListed", "invalid"], "properties": {"added": {"type": "integer"}, "alreadyListed": {"type": "integer"}, "invalid": {"type": "array"}, "invalidSummary": {"type": "object"}}}), **errors(400, 401, 413)},
    requestBody={"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["numbers"], "additionalProperties": False, "properties": {"numbers": {"type": "array", "minItems": 1, "items": number}}}, "example": {"numbers": ["+919811112222"]}}, "text/csv": {"schema": {"type": "string", "pattern": "^(\\+91[6-9][0-9]{9}\\n){1,5}$"}}}}))
route("/dnc/{number}", delete=op("Take a number off the list", "dnc", {**ok("removed", {"type": "object", "required": ["removed"], "properties": {"removed": {"type": "string"}}}), **errors(400, 401, 404)}, parameters=numparam))
event_row = {"type": "object", "required": ["id", "type", "createdAt", "status", "attempts", "nextAt"], "properties": {"id": {"type": "string"}, "type": {"type": "string"}, "callLogId": {"type": ["string", "null"]}, "createdAt": {"type": "integer"}, "status": {"type": "string", "enum": ["pending", "failed"]}, "attempts": {"type": "integer"}, "nextAt": {"type": "integer"}, "lastError": {"type": ["string", "null"]}}}
route("/events", get=op("Events for EVENTS_URL not yet taken, oldest first", "events", {**ok("the events", {"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": event_row}}}), **errors(400, 401)},
    parameters=[qparam("status", {"type": "string", "enum": ["", "pending", "failed"]}, "pending (the default) or failed")]))
route("/events/{id}/retry", post=op("Send an event again now", "events", {**ok("pending again", {"type": "object", "required": ["id", "status"], "properties": {"id": {"type": "string"}, "status": {"type": "string"}}}), **errors(401, 404, 409)},
    parameters=[pparam("id", {"type": "string", "minLength": 1}, "the event's id (its webhook-id)")]))
connect_ok = ok("where to stream the call's audio", {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}})
# Exotel's ids are read trimmed: one of only spaces or tabs is not there.
call_sid = {"type": "string", "minLength": 1, "pattern": "\\S"}
connect_params = [dict(qparam(n, call_sid if n == "CallSid" else {"type": "string"}, d), **({"required": True} if n == "CallSid" else {})) for n, d in [("CallSid", "Exotel's call id"), ("CallFrom", "the caller"), ("CallTo", "the ExoPhone"), ("Direction", "incoming or outbound-api"), ("CustomField", "the callLogId of a call placed here"), ("secret", "WEBHOOK_SECRET, when set")]]
form = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "required": ["CallSid"], "properties": {"CallSid": call_sid, "CallFrom": {"type": "string"}, "CallTo": {"type": "string"}, "Direction": {"type": "string"}, "CustomField": {"type": "string"}}}}, "application/json": {"schema": ref("ConnectParams")}}}
for path in ["/api/v1/exotel/voice/connect", "/voicebot/connect"]:
    route(path, get=op("Exotel's connect webhook (Voicebot applet)", "exotel", {**connect_ok, **errors(400, 401, 429, 503)}, security=EXOTEL, parameters=connect_params),
        post=op("Exotel's connect webhook, as a form or JSON", "exotel", {**connect_ok, **errors(400, 401, 429, 503)}, security=EXOTEL, parameters=[connect_params[-1]], requestBody=form))
status_ok = {"200": {"description": "taken (again: nothing changes)", "content": {"application/json": {"schema": {"type": "object"}}}}}
route("/api/v1/exotel/status", get=op("Exotel's status callback of a placed call", "exotel", {**status_ok, **errors(400, 401)}, security=EXOTEL, parameters=connect_params),
    post=op("Exotel's status callback, as a form or JSON", "exotel", {**status_ok, **errors(400, 401)}, security=EXOTEL, parameters=[connect_params[-1]], requestBody=form))
pt = {"200": {"description": "one branch of the Passthru applet (PASSTHRU_HANDOFF_STATUS picks which status means hand off)", "content": {"application/json": {"schema": {"type": "object"}}}}, "302": {"description": "the other branch"}}
passthru_params = [qparam(n, {"type": "string"}, d) for n, d in [("CallSid", "Exotel's call id"), ("CustomField", "the call's callLogId"), ("secret", "WEBHOOK_SECRET, when set")]]
route("/api/v1/exotel/passthru", get=op("Exotel's Passthru applet: hand the caller to a person or not", "exotel", {**pt, **errors(400, 401)}, security=EXOTEL, parameters=passthru_params),
    post=op("The Passthru applet's POST", "exotel", {**pt, **errors(400, 401)}, security=EXOTEL, parameters=[passthru_params[-1]], requestBody={"required": False, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}, "application/json": {"schema": {}}}}))
route("/media", get=op("Exotel's media WebSocket (a token from the connect webhook)", "exotel", {"101": {"description": "switching to the WebSocket"}, **errors(400, 401)}, security=[{}],
    parameters=[qparam("token", {"type": "string"}, "the call's media token"), qparam("callLogId", {"type": "string"}, "the call's id"), qparam("sample-rate", {"type": "integer", "enum": [8000, 16000, 24000]}, "the stream's rate")]))
live_call = {"type": "object", "required": ["callLogId", "direction", "number", "phone", "status", "startedAt"], "properties": {"callLogId": {"type": "string"}, "direction": {"type": "string"}, "number": {"type": "string"}, "phone": {"type": "string"}, "agent": {"type": ["string", "null"]}, "status": {"type": "string"}, "startedAt": {"type": "integer"}, "answeredAt": {"type": ["integer", "null"]}}}
route("/live", get=op("The live calls and the capacity in use, from memory (the console's live view)", "console", {**ok("now", {"type": "object", "required": ["calls", "live", "max", "phones", "health", "now"], "properties": {"calls": {"type": "array", "items": live_call}, "live": {"type": "integer"}, "max": {"type": "integer"}, "phones": {"type": "array", "items": {"type": "object"}}, "health": {"type": "string"}, "now": {"type": "integer"}}}), **errors(401)}))
html = lambda d: {"200": {"description": d, "content": {"text/html": {"schema": {"type": "string"}}}}}
host_refused = {"403": {"description": "a Host this server does not answer to (UI_ALLOWED_HOSTS)", "content": {"application/json": {"schema": ref("Error")}}}}
route("/ui", get=op("The console lives at /ui/", "console", {"308": {"description": "to /ui/"}, "default": rresp("Error")}, security=[{}]))
route("/ui/", get=op("The operator console's page", "console", {**html("the page"), **host_refused, "default": rresp("Error")}, security=[{}]))
session = {"type": "object", "required": ["signedIn", "tokenRequired", "csrf"], "properties": {"signedIn": {"type": "boolean"}, "tokenRequired": {"type": "boolean"}, "csrf": {"type": ["string", "null"], "description": "send it as X-CSRF-Token on the requests that change something"}}}
route("/ui/session", get=op("Whether this browser is signed in to the console", "console", {**ok("the session", session), **host_refused, "default": rresp("Error")}, security=[{}]),
    post=op("Sign a browser in with the API_TOKEN (5 wrong tokens a minute per address); sets an HttpOnly session cookie", "console", {**ok("signed in", session), **host_refused, **errors(400, 401, 429)}, security=[{}], requestBody=jbody({"type": "object", "required": ["token"], "additionalProperties": False, "properties": {"token": {"type": "string"}}})),
    delete=op("Sign this browser out", "console", {**ok("signed out", session), "default": rresp("Error")}, security=[{}]))
route("/ui/{file}", get=op("One of the console's files (gzip, ETag)", "console", {"200": {"description": "the file", "content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}}}, **host_refused, **errors(404)}, security=[{}], parameters=[pparam("file", {"type": "string"}, "a file name")]))
route("/health", get=op("Whether the server takes calls", "probes", {**ok("serving", ref("Health")), "503": {"description": "draining after SIGTERM", "content": {"application/json": {"schema": ref("Health")}}}, "default": rresp("Error")}, security=[{}]),
    head=op("The same, without a body", "probes", {"200": {"description": "serving"}, "503": {"description": "draining"}}, security=[{}]))
route("/metrics", get=op("Prometheus text", "probes", {"200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(401)}, security=[{"metricsToken": []}, {}]))
route("/openapi.json", get=op("This document", "probes", {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}, "default": rresp("Error")}, security=[{}]))
def event(kind, summary, data):
    headers = {h: {"required": True, "schema": {"type": "string"}, "description": d} for h, d in [
        ("webhook-id", "the event's id, the same on every attempt"),
        ("webhook-timestamp", "Unix seconds of this attempt"),
        ("webhook-signature", "v1, and the base64 of HMAC-SHA256 over {id}.{timestamp}.{body} keyed with EVENTS_SECRET's base64 part (Standard Webhooks)")]}
    return {"post": {"summary": summary, "tags": ["events"], "parameters": [{"name": h, "in": "header", **v} for h, v in headers.items()],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["type", "timestamp", "data"], "properties": {"type": {"const": kind}, "timestamp": {"type": "string"}, "data": data}}}}},
        "responses": {"2XX": {"description": "taken; anything else is tried again with backoff for EVENTS_RETRY_HOURS"}}}}
ended = {"allOf": [ref("CallRow"), {"type": "object", "properties": {"transcript": {"type": "array", "items": {"type": "object", "properties": {"role": {"type": "string"}, "text": {"type": "string"}, "at": {"type": "integer"}, "atIso": {"type": "string"}}}}}}]}
webhooks = {
 "call.started": event("call.started", "A call's media connected: its row", ref("CallRow")),
 "call.ended": event("call.ended", "A call reached its final status: its row, its transcript's turns when there are any", ended),
 "call.handoff": event("call.handoff", "A call was handed to a person", {"type": "object", "required": ["callLogId", "reason"], "properties": {"callLogId": {"type": "string"}, "reason": {"type": "string"}}}),
 "campaign.completed": event("campaign.completed", "A campaign dialed everyone it would", {"type": "object", "required": ["id", "name", "total"], "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "total": {"type": "integer"}}}),
}
doc = {
 "openapi": "3.1.0",
 "info": {"title": "exotel-voicebot", "version": "0.1.0", "description": "The telephony edge for a voice bot on Exotel. The README is the manual; this is its HTTP API as a contract. Every error is {\"error\", \"detail\"}."},
 "servers": [{"url": "http://localhost:3000"}],
 "security": USER,
 "tags": [{"name": n} for n in ["calls", "phones", "agents", "campaigns", "dnc", "events", "console", "exotel", "probes"]],
 "paths": paths,
 "webhooks": webhooks,
 "components": {"schemas": schemas, "responses": responses, "securitySchemes": {
    "bearer": {"type": "http", "scheme": "bearer", "description": "API_TOKEN; without one set, only local clients may call"},
    "webhookSecret": {"type": "apiKey", "in": "query", "name": "secret", "description": "WEBHOOK_SECRET, when set"},
    "webhookBasic": {"type": "http", "scheme": "basic", "description": "WEBHOOK_SECRET as the password, when set"},
    "metricsToken": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN, when set"}}},
}
def nullable_optionals(schema):
    """Optional fields of request objects also take null (read as absent)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            req = set(schema.get("required", []))
            for k, v in schema["properties"].items():
                if k not in req and isinstance(v, dict) and "type" in v and isinstance(v["type"], str):
                    v["type"] = [v["type"], "null"]
                    if "enum" in v: v["enum"] = v["enum"] + [None]
                elif k not in req and isinstance(v, dict) and "enum" in v and "null" not in str(v.get("type")):
                    v["enum"] = v["enum"] + [None]; v["type"] = [v["type"], "null"] if isinstance(v.get("type"), str) else v.get("type")
        for v in schema.values(): nullable_optionals(v)
    elif isinstance(schema, list):
        for v in schema: nullable_optionals(v)
for path, ops in paths.items():
    for m, o in ops.items():
        rb = o.get("requestBody", {}).get("content", {}).get("application/json")
        if rb and "$ref" not in rb["schema"]:
            rb["schema"] = json.loads(json.dumps(rb["schema"])); nullable_optionals(rb["schema"])
for name in ["PlaceCall", "PhoneFields", "CampaignFields"]:
    schemas[name] = json.loads(json.dumps(schemas[name])); nullable_optionals(schemas[name])
print(json.dumps(doc, indent=1))
