// Server-sent events read from a streamed response body: the `data:` payloads of each event, as they arrive.

/** Splits a text stream into SSE events; feed() returns the data of every event completed so far. */
export class SseParser {
  constructor() {
    this.buffer = "";
    this.data = [];
  }

  feed(text) {
    this.buffer += text;
    const out = [];
    let nl;
    while ((nl = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, nl);
      const sep = this.buffer[nl] === "\r" && this.buffer[nl + 1] === "\n" ? 2 : 1;
      // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
      if (this.buffer[nl] === "\r" && nl + 1 === this.buffer.length) break;
      this.buffer = this.buffer.slice(nl + sep);
      if (line === "") {
        if (this.data.length) out.push(this.data.join("\n"));
        this.data = [];
      } else if (line.startsWith("data:")) {
        this.data.push(line.slice(5).replace(/^ /, ""));
      }
      // Comments (":"), event:, id: and retry: lines carry nothing the console needs.
    }
    return out;
  }
}

/** Reads `response.body` and calls onData(payload) for each event's data until the stream ends. */
export async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    const text = done ? decoder.decode() + "\n\n" : decoder.decode(value, { stream: true });
    for (const payload of parser.feed(text)) {
      if (onData(payload) === false) {
        await reader.cancel();
        return;
      }
    }
    if (done) return;
  }
}
