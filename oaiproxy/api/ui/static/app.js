// oaiproxy's operator UI: plain JavaScript, no build step, no external assets.
"use strict";

const KEY_STORAGE = "oaiproxy.apiKey";
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function pretty(value) {
  if (typeof value === "string") {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch (e) { return value; }
  }
  return JSON.stringify(value, null, 2);
}

function when(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "–";
  return new Date(epochSeconds * 1000).toLocaleString();
}

function showError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

// ------------------------------------------------------------------ the API key and requests

class KeyNeeded extends Error {}

function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = apiKey();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function errorText(resp) {
  let text = await resp.text();
  try {
    const err = JSON.parse(text).error;
    if (err) text = err.message + (err.param ? ` (${err.param})` : "");
  } catch (e) { /* not JSON */ }
  return `${resp.status}: ${text}`;
}

async function call(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.body ? {"Content-Type": "application/json"} : {});
  const resp = await fetch(path, opts);
  if (resp.status === 401) { askForKey(await errorText(resp)); throw new KeyNeeded(); }
  if (!resp.ok) throw new Error(await errorText(resp));
  return resp.json();
}

function askForKey(message) {
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("#view-key").hidden = false;
  showError($("#key-error"), apiKey() ? message : "");
  $("#key-input").focus();
}

$("#key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  localStorage.setItem(KEY_STORAGE, $("#key-input").value.trim());
  $("#key-input").value = "";
  $("#view-key").hidden = true;
  started = false;
  route();
});
$("#key-change").addEventListener("click", () => askForKey(""));

// ------------------------------------------------------------------ views

const VIEWS = ["status", "playground", "threads", "grammar"];
let started = false;

async function start() {
  // one data request first: with a key set and none (or a wrong one) given, the key form comes up
  try {
    const [models, tools] = await Promise.all([call("/v1/models"), call("/v1/tools")]);
    fillModels(models, tools);
    started = true;
    return true;
  } catch (e) {
    if (!(e instanceof KeyNeeded)) showError($("#banner"), "The proxy did not answer: " + e.message);
    return false;
  }
}

async function route() {
  if (!started && !(await start())) return;
  const name = VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "status";
  for (const v of VIEWS) $("#view-" + v).hidden = v !== name;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (name === "status") loadStatus();
  if (name === "threads") loadThreads(threadsCursor[threadsCursor.length - 1]);
}
window.addEventListener("hashchange", route);

// ------------------------------------------------------------------ status

function dl(pairs) {
  return el("dl", {}, pairs.filter((p) => p).map(([k, v]) => [el("dt", {text: k}), el("dd", {}, v)]));
}

async function loadStatus() {
  const body = $("#status-body");
  let s;
  try { s = await call("/ui/api/status"); } catch (e) {
    if (!(e instanceof KeyNeeded)) body.replaceChildren(el("p", {class: "error", text: e.message}));
    return;
  }
  const up = s.upstream, q = s.queue;
  const cards = [
    el("article", {class: "card", "aria-label": "Model"}, el("h3", {text: "Model"}), dl([
      ["served", s.model], ["all ids", s.models.join(", ")], ["uptime", `${Math.round(s.uptime_s)} s`],
      ["store", s.store ? "on (threads, stored responses)" : "off"]])),
    el("article", {class: "card", "aria-label": "Dialect"}, el("h3", {text: "Dialect"}), dl([
      ["style", s.style.name], ["why", s.style.reason]])),
    el("article", {class: "card", "aria-label": "llama-server"}, el("h3", {text: "llama-server"}), dl([
      ["state", el("span", {class: up.healthy ? "ok" : "bad", text: up.state})], ["url", up.url],
      ["managed", up.managed ? "spawned by the proxy" : "--endpoint"],
      ["context per slot", up.context_per_slot ?? "unknown"],
      ["stalls", String(up.stalls)], up.error ? ["error", up.error] : null,
      up.last_restart_reason ? ["last restart", up.last_restart_reason] : null])),
    el("article", {class: "card", "aria-label": "Queue"}, el("h3", {text: "Slots and queue"}), dl([
      ["generating", `${q.active} of ${q.slots} slots`], ["waiting", `${q.waiting} (at most ${q.max_queue})`]])),
  ];
  const tools = s.tools;
  cards.push(el("article", {class: "card wide", "aria-label": "Tool sources"}, el("h3", {text: "Tool sources"}),
    !tools ? el("p", {text: "No --tools file."}) : el("div", {},
      el("p", {text: `${tools.file} — loaded ${when(tools.loaded_at)}`}),
      el("ul", {}, tools.sources.map((src) => el("li", {},
        el("strong", {text: src.name}), ` (${src.kind}, ${src.tools.length} tools, loaded ${when(src.loaded_at)})`,
        src.error ? el("span", {class: "bad", text: " error: " + src.error}) : null))),
      tools.brains.length ? el("p", {text: "Brains: " + tools.brains.map((b) => b.name).join(", ")}) : null)));
  cards.push(el("article", {class: "card wide", "aria-label": "Recent errors"}, el("h3", {text: "Recent errors"}),
    s.recent_errors.length === 0 ? el("p", {text: "None since the proxy started."}) :
      el("ul", {class: "log"}, s.recent_errors.map((r) => el("li", {},
        el("time", {text: new Date(r.time * 1000).toLocaleTimeString()}), ` ${r.level} ${r.logger}: ${r.message}`)))));
  body.replaceChildren(...cards);
}
$("#status-refresh").addEventListener("click", loadStatus);

// ------------------------------------------------------------------ playground

let chatHistory = [];
let controller = null;

function fillModels(models, tools) {
  const select = $("#model");
  select.replaceChildren(...models.data.map((m) => el("option", {value: m.id, text: m.id})));
  const names = (tools.data || []).map((t) => t.name);
  $("#server-tools-box").hidden = names.length === 0;
  $("#server-tools").replaceChildren(...names.map((n, i) => el("div", {class: "check"},
    el("input", {type: "checkbox", id: "server-tool-" + i, value: n}),
    el("label", {for: "server-tool-" + i, text: n}))));
}

function toolsList() {
  const text = $("#tools").value.trim();
  if (!text) return null;
  let tools;
  try { tools = JSON.parse(text); } catch (e) { throw new Error("Tools: not JSON: " + e.message); }
  if (!Array.isArray(tools)) throw new Error("Tools: expected a JSON list of tools");
  return tools;
}

function refreshToolChoice() {
  const select = $("#tool-choice");
  const chosen = select.value;
  for (const opt of [...select.options]) if (opt.dataset.named) opt.remove();
  let tools = [];
  try { tools = toolsList() || []; } catch (e) { /* shown on send */ }
  for (const t of tools) {
    const name = t && t.function && t.function.name;
    if (name) select.append(el("option", {value: "function:" + name, "data-named": "1", text: `function ${name}`}));
  }
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
}
$("#tools").addEventListener("change", refreshToolChoice);

function chatRequest() {
  const messages = [];
  const system = $("#system").value.trim();
  if (system) messages.push({role: "system", content: system});
  const req = {model: $("#model").value, messages: messages.concat(chatHistory), stream: true,
               stream_options: {include_usage: true}};
  const maxTokens = parseInt($("#max-tokens").value, 10);
  if (maxTokens) req.max_tokens = maxTokens;
  const temperature = parseFloat($("#temperature").value);
  if (!Number.isNaN(temperature)) req.temperature = temperature;
  const tools = toolsList();
  if (tools) req.tools = tools;
  const serverTools = [...document.querySelectorAll("#server-tools input:checked")].map((i) => i.value);
  if (serverTools.length) req.server_tools = serverTools;
  const choice = $("#tool-choice").value;
  if (choice.startsWith("function:")) req.tool_choice = {type: "function", function: {name: choice.slice(9)}};
  else if (choice) req.tool_choice = choice;
  const format = $("#response-format").value;
  if (format === "json_object") req.response_format = {type: "json_object"};
  if (format === "json_schema") {
    let schema;
    try { schema = JSON.parse($("#response-schema").value); } catch (e) {
      throw new Error("response_format: the JSON Schema is not JSON: " + e.message);
    }
    req.response_format = {type: "json_schema", json_schema: {name: "answer", schema: schema}};
  }
  return req;
}

function toolCard(call, result) {
  return el("article", {class: "tool-card", "aria-label": "Tool call " + call.function.name},
    el("h4", {}, el("span", {class: "badge", text: "tool call"}), " ", el("code", {text: call.function.name})),
    el("pre", {class: "args", text: pretty(call.function.arguments)}),
    el("p", {class: "meta", text: "id " + call.id}),
    result ? el("div", {class: "result"}, el("h5", {text: result.is_error ? "Error" : "Result"}),
      el("pre", {text: pretty(result.content)})) : null);
}

function inspectionView(inspection) {
  const box = el("details", {class: "inspect"},
    el("summary", {text: "Show prompt, grammar and raw output"}));
  inspection.exchanges.forEach((x, i) => {
    const part = (title, text) => el("div", {}, el("h5", {text: title}), el("pre", {text: text}));
    box.append(el("section", {"aria-label": `Request ${i + 1} to llama-server`},
      el("h4", {text: `Request ${i + 1} of ${inspection.exchanges.length} to llama-server /completion`}),
      part("Prompt as rendered", x.prompt),
      part("Grammar (GBNF)" + (x.grammar_lazy ? ", lazy" : ""), x.grammar || "(none: free text)"),
      part("Triggers", x.grammar_triggers.length ?
        x.grammar_triggers.map((t) => `${t.kind}: ${JSON.stringify(t.value)}`).join("\n") : "(none)"),
      part("Preserved tokens", x.preserved_tokens.join("  ") || "(none)"),
      part("Stops", x.stop.length ? pretty(x.stop) : "(none)"),
      part("Raw model text", x.raw),
      part("Other parameters", pretty(Object.assign({stop_type: x.stop_type, tokens: x.tokens_predicted},
                                                     x.params)))));
  });
  return box;
}

function userBubble(text) {
  return el("div", {class: "msg user"}, el("span", {class: "who", text: "user"}), el("p", {text: text}));
}

// the client's side of a tool call: a result for each call, then Send continues the conversation
function resultForm(toolCalls) {
  const box = el("div", {class: "results-form"});
  toolCalls.forEach((c, i) => {
    const id = `result-${c.id}-${i}`;
    const area = el("textarea", {id: id, rows: "2", spellcheck: "false"});
    const add = el("button", {type: "button", class: "quiet", text: "Add result", onclick: () => {
      chatHistory.push({role: "tool", tool_call_id: c.id, content: area.value});
      $("#transcript").append(el("div", {class: "msg tool"}, el("span", {class: "who", text: "tool"}),
        el("pre", {class: "content", text: area.value}), el("p", {class: "meta", text: "result of " + c.id})));
      add.disabled = true; area.disabled = true;
    }});
    box.append(el("label", {for: id, text: `Result of ${c.function.name} (${c.id})`}), area, add);
  });
  return box;
}

async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data && data !== "[DONE]") yield JSON.parse(data);
    }
  }
}

async function send(ev) {
  ev.preventDefault();
  const text = $("#message").value.trim();
  showError($("#chat-error"), "");
  const afterResult = chatHistory.length && chatHistory[chatHistory.length - 1].role === "tool";
  if (!text && !afterResult) { showError($("#chat-error"), "Write a message first."); return; }
  let req;
  if (text) chatHistory.push({role: "user", content: text});  // taken back if the request fails
  try { req = chatRequest(); } catch (e) { if (text) chatHistory.pop(); showError($("#chat-error"), e.message); return; }
  $("#message").value = "";
  const transcript = $("#transcript");
  if (text) transcript.append(userBubble(text));
  const reasoningText = el("pre", {class: "reasoning-text"});
  const reasoning = el("details", {class: "reasoning", hidden: true}, el("summary", {text: "Reasoning"}), reasoningText);
  const content = el("p", {class: "content"});
  const calls = el("div", {class: "tool-calls"});
  const steps = el("div", {class: "steps"});
  const footer = el("p", {class: "meta"});
  const bubble = el("div", {class: "msg assistant", "aria-busy": "true"},
    el("span", {class: "who", text: "assistant"}), steps, reasoning, content, calls, footer);
  transcript.append(bubble);
  controller = new AbortController();
  $("#send").disabled = true; $("#stop").disabled = false;
  const toolCalls = [];
  let answer = "", finish = null, usage = null;
  try {
    const resp = await fetch("/ui/api/chat", {method: "POST", body: JSON.stringify(req), signal: controller.signal,
                                              headers: headers({"Content-Type": "application/json"})});
    if (resp.status === 401) { askForKey(await errorText(resp)); throw new KeyNeeded(); }
    if (!resp.ok) throw new Error(await errorText(resp));
    for await (const event of sseEvents(resp)) {
      if (event.object === "oaiproxy.inspection") { bubble.append(inspectionView(event)); continue; }
      if (event.error) throw new Error(event.error.message);
      if (event.step) {
        const step = event.step;
        if (step.type === "tool_calls") for (const c of step.tool_calls) steps.append(toolCard(c, null));
        else for (const r of step.results) {
          steps.append(el("div", {class: "result"}, el("h5", {text: `${r.is_error ? "Error" : "Result"} of ${r.name}`}),
            el("pre", {text: pretty(r.content)})));
        }
      }
      if (event.usage) usage = event.usage;
      for (const choice of event.choices || []) {
        const d = choice.delta || {};
        if (d.reasoning_content) { reasoning.hidden = false; reasoningText.textContent += d.reasoning_content; }
        if (d.content) { answer += d.content; content.textContent = answer; }
        for (const tc of d.tool_calls || []) {
          const slot = toolCalls[tc.index] || (toolCalls[tc.index] = {id: "", type: "function",
                                                                        function: {name: "", arguments: ""}});
          if (tc.id) slot.id = tc.id;
          if (tc.function && tc.function.name) slot.function.name += tc.function.name;
          if (tc.function && tc.function.arguments) slot.function.arguments += tc.function.arguments;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    calls.replaceChildren(...toolCalls.map((c) => toolCard(c, null)));
    if (toolCalls.length) calls.append(resultForm(toolCalls));
    const message = {role: "assistant", content: answer};
    if (toolCalls.length) message.tool_calls = toolCalls;
    chatHistory.push(message);
    footer.textContent = `finish: ${finish}` + (usage ? ` · ${usage.prompt_tokens} prompt + ` +
                                               `${usage.completion_tokens} completion tokens` : "");
  } catch (e) {
    if (text) chatHistory.pop();
    if (!(e instanceof KeyNeeded)) {
      showError($("#chat-error"), e.name === "AbortError" ? "Stopped." : e.message);
    }
    footer.textContent = e.name === "AbortError" ? "stopped" : "failed";
  } finally {
    bubble.removeAttribute("aria-busy");
    $("#send").disabled = false; $("#stop").disabled = true;
    controller = null;
  }
}
$("#chat-form").addEventListener("submit", send);
$("#stop").addEventListener("click", () => controller && controller.abort());
$("#clear").addEventListener("click", () => { chatHistory = []; $("#transcript").replaceChildren(); });
$("#message").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) $("#chat-form").requestSubmit();
});

// ------------------------------------------------------------------ threads

const PAGE = 20;
let threadsCursor = [null];  // the `after` of each page shown so far; the last is the current page's
let openThread = null;       // {name, first, last, hasOlder, hasNewer}

async function loadThreads(after) {
  const err = $("#threads-error");
  showError(err, "");
  let page;
  try {
    page = await call("/ui/api/threads?limit=" + PAGE + (after ? "&after=" + encodeURIComponent(after) : ""));
  } catch (e) { if (!(e instanceof KeyNeeded)) showError(err, e.message); return; }
  const body = $("#threads-table tbody");
  body.replaceChildren(...page.data.map((t) => el("tr", {},
    el("th", {scope: "row"}, el("code", {text: t.name})), el("td", {text: String(t.messages)}),
    el("td", {text: t.user || "–"}), el("td", {text: when(t.updated_at)}),
    el("td", {class: "actions"},
      el("button", {type: "button", "aria-label": "Open thread " + t.name, text: "Open",
                    onclick: () => showThread(t.name, {})}),
      el("button", {type: "button", class: "danger", "aria-label": "Delete thread " + t.name, text: "Delete",
                    onclick: () => deleteThread(t.name)})))));
  if (!page.data.length) body.append(el("tr", {}, el("td", {colspan: "5", text: "No threads."})));
  $("#threads-page").textContent = `page ${threadsCursor.length}`;
  $("#threads-prev").disabled = threadsCursor.length <= 1;
  const next = $("#threads-next");
  next.disabled = !page.has_more;
  next.dataset.after = page.last_id || "";
}
$("#threads-refresh").addEventListener("click", () => loadThreads(threadsCursor[threadsCursor.length - 1]));
$("#threads-next").addEventListener("click", () => {
  threadsCursor.push($("#threads-next").dataset.after);
  loadThreads(threadsCursor[threadsCursor.length - 1]);
});
$("#threads-prev").addEventListener("click", () => {
  if (threadsCursor.length > 1) threadsCursor.pop();
  loadThreads(threadsCursor[threadsCursor.length - 1]);
});

function threadMessage(m) {
  const usage = m.usage ? ` · ${m.usage.input_tokens} in, ${m.usage.output_tokens} out` : "";
  return el("li", {class: "msg " + m.role},
    el("p", {class: "meta"}, el("span", {class: "who", text: m.role}), m.user ? ` ${m.user}` : "",
      ` · #${m.position} · `, el("time", {text: when(m.created_at)}), usage,
      m.tool_call_id ? ` · result of ${m.tool_call_id}` : ""),
    m.reasoning ? el("details", {class: "reasoning"}, el("summary", {text: "Reasoning"}),
      el("pre", {class: "reasoning-text", text: m.reasoning})) : null,
    m.content ? el("pre", {class: "content", text: m.role === "tool" ? pretty(m.content) : m.content}) : null,
    (m.tool_calls || []).map((c) => toolCard(c, null)));
}

async function showThread(name, where) {
  const err = $("#threads-error");
  showError(err, "");
  let query = "?limit=" + PAGE;
  if (where.after !== undefined) query += "&after=" + where.after;
  else if (where.before !== undefined) query += "&before=" + where.before + "&order=desc";
  else query += "&order=desc";  // the newest page first
  let page;
  try { page = await call("/" + encodeURIComponent(name) + query); } catch (e) {
    if (!(e instanceof KeyNeeded)) showError(err, e.message);
    return;
  }
  let messages = page.data;
  const descending = where.after === undefined;
  if (descending) messages = messages.slice().reverse();
  openThread = {name, first: messages.length ? messages[0].position : null,
                last: messages.length ? messages[messages.length - 1].position : null,
                hasOlder: descending ? page.has_more : (messages.length ? messages[0].position > 0 : false),
                hasNewer: descending ? where.before !== undefined : page.has_more};
  $("#thread-title").textContent = "Thread " + name;
  $("#thread-messages").replaceChildren(...messages.map(threadMessage));
  $("#thread-older").disabled = !openThread.hasOlder;
  $("#thread-newer").disabled = !openThread.hasNewer;
  $("#thread-detail").hidden = false;
  $("#thread-title").focus();
}
$("#thread-title").setAttribute("tabindex", "-1");
$("#thread-older").addEventListener("click", () => showThread(openThread.name, {before: openThread.first}));
$("#thread-newer").addEventListener("click", () => showThread(openThread.name, {after: openThread.last}));
$("#thread-close").addEventListener("click", () => { $("#thread-detail").hidden = true; openThread = null; });
$("#thread-delete").addEventListener("click", () => openThread && deleteThread(openThread.name));

async function deleteThread(name) {
  if (!confirm(`Delete thread ${name} and all its messages?`)) return;
  const err = $("#threads-error");
  try { await call("/" + encodeURIComponent(name), {method: "DELETE"}); } catch (e) {
    if (!(e instanceof KeyNeeded)) showError(err, e.message);
    return;
  }
  if (openThread && openThread.name === name) { $("#thread-detail").hidden = true; openThread = null; }
  loadThreads(threadsCursor[threadsCursor.length - 1]);
}

// ------------------------------------------------------------------ grammar lab

function schemaValue() {
  try { return JSON.parse($("#schema").value); } catch (e) {
    throw new Error("The schema is not JSON: " + e.message);
  }
}

$("#grammar-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = $("#grammar-error");
  showError(err, "");
  $("#gbnf").textContent = "";
  try {
    const out = await call("/ui/api/grammar", {method: "POST", body: JSON.stringify({schema: schemaValue()})});
    $("#gbnf").textContent = out.gbnf;
  } catch (e) { if (!(e instanceof KeyNeeded)) showError(err, e.message); }
});

$("#sample").addEventListener("click", async () => {
  const err = $("#grammar-error");
  showError(err, "");
  const list = $("#samples");
  list.replaceChildren(el("li", {text: "Sampling…"}));
  $("#sample").disabled = true;
  try {
    const body = {schema: schemaValue(), n: parseInt($("#sample-n").value, 10) || 3,
                  max_tokens: parseInt($("#sample-max-tokens").value, 10) || 128};
    if ($("#sample-prompt").value.trim()) body.prompt = $("#sample-prompt").value;
    const out = await call("/ui/api/grammar/sample", {method: "POST", body: JSON.stringify(body)});
    $("#gbnf").textContent = out.gbnf;
    list.replaceChildren(...out.data.map((s) => el("li", {class: "sample"},
      el("span", {class: "badge " + (s.valid ? "ok" : "bad"), text: s.valid ? "valid" : "not valid"}),
      ` seed ${s.seed}, ${s.tokens} tokens`, s.errors.length ? el("span", {class: "bad", text: " " + s.errors.join("; ")}) : null,
      el("pre", {text: s.value !== undefined ? pretty(s.value) : s.text}))));
  } catch (e) {
    list.replaceChildren();
    if (!(e instanceof KeyNeeded)) showError(err, e.message);
  } finally { $("#sample").disabled = false; }
});

route();
