// Chat with a model through the inference API, streamed: fetch + a ReadableStream reader parsing SSE,
// tokens appended as they arrive; then the usage and the latency.
import { useRef, useState } from "preact/hooks";
import { ApiError, call } from "../api.js";
import { readEvents } from "../sse.js";
import { useStore } from "../store.js";
import { Alert, fmtNum, PageTitle, TextInput, useId } from "../ui.jsx";

export function PlaygroundPage() {
  const st = useStore();
  const [key, setKey] = useState(st.lastSecret ? st.lastSecret.key : "");
  const [model, setModel] = useState("");
  const [models, setModels] = useState([]);
  const [message, setMessage] = useState("");
  const [output, setOutput] = useState("");
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState(null);
  const [stats, setStats] = useState(null);
  const abort = useRef(null);
  const messageId = useId("msg");
  const listId = useId("models");

  const loadModels = async () => {
    setError(null);
    try {
      const res = await call("GET", "/v1/models", { apiKey: key });
      setModels(res.data.map((m) => m.id));
      if (!model && res.data.length) setModel(res.data[0].id);
    } catch (e) {
      setError(e);
    }
  };

  const send = async (e) => {
    e.preventDefault();
    setError(null);
    setOutput("");
    setStats(null);
    setStreaming(true);
    const controller = new AbortController();
    abort.current = controller;
    const t0 = performance.now();
    let ttfb = null;
    let usage = null;
    let text = "";
    try {
      const res = await call("POST", "/v1/chat/completions", {
        apiKey: key, raw: true, signal: controller.signal, headers: { accept: "text/event-stream" },
        body: { model, messages: [{ role: "user", content: message }], stream: true, stream_options: { include_usage: true } },
      });
      await readEvents(res, (data) => {
        if (data === "[DONE]") return false;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(res.status, chunk.error.message, chunk);
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (ttfb === null) ttfb = performance.now() - t0;
          text += delta.content;
          setOutput(text);
        }
        return true;
      });
      setStats({ usage, ttfb, total: performance.now() - t0 });
    } catch (err) {
      if (err.name === "AbortError") setStats({ usage, ttfb, total: performance.now() - t0, stopped: true });
      else setError(err);
    } finally {
      setStreaming(false);
      abort.current = null;
    }
  };

  return (
    <>
      <PageTitle>Playground</PageTitle>
      <form class="card" onSubmit={send}>
        <div class="row">
          <TextInput label="API key" name="pg-key" type="password" autocomplete="off" required value={key} onInput={setKey}
            hint={st.lastSecret && key === st.lastSecret.key ? `The key “${st.lastSecret.name}” created in this tab.` : "The inference API takes API keys only."} />
          <TextInput label="Model" name="pg-model" required value={model} onInput={setModel} list={listId} />
          <datalist id={listId}>{models.map((m) => <option key={m} value={m} />)}</datalist>
        </div>
        <button type="button" class="secondary" onClick={loadModels} disabled={!key}>Load the models of this key</button>
        <div class="field">
          <label for={messageId}>Message</label>
          <textarea id={messageId} name="pg-message" rows="4" required value={message}
            onInput={(ev) => setMessage(ev.currentTarget.value)} />
        </div>
        <div class="toolbar">
          <button type="submit" disabled={streaming}>{streaming ? "Streaming…" : "Send"}</button>
          {streaming && <button type="button" class="secondary" onClick={() => abort.current && abort.current.abort()}>Stop</button>}
        </div>
      </form>
      <div aria-live="assertive"><Alert error={error} /></div>
      <section aria-labelledby="answer-h">
        <h2 id="answer-h">Answer</h2>
        <output class="answer" aria-live="polite" aria-busy={streaming ? "true" : "false"} data-testid="answer"
          for={messageId}>{output}</output>
        {stats && (
          <dl class="stats" data-testid="stats">
            <dt>Prompt tokens</dt><dd>{stats.usage ? fmtNum(stats.usage.prompt_tokens) : "—"}</dd>
            <dt>Completion tokens</dt><dd>{stats.usage ? fmtNum(stats.usage.completion_tokens) : "—"}</dd>
            <dt>First token</dt><dd>{stats.ttfb === null ? "—" : `${fmtNum(stats.ttfb)} ms`}</dd>
            <dt>Total</dt><dd>{`${fmtNum(stats.total)} ms`}{stats.stopped ? " (stopped)" : ""}</dd>
          </dl>
        )}
      </section>
    </>
  );
}
