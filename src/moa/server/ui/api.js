// Talking to moa serve: the API key (asked for on a 401, kept in this tab's sessionStorage),
// JSON calls, and reading the events of POST /v1/moa/runs as they arrive.

const KEY = "moa.apiKey";

function askKey(refused) {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-error").hidden = !refused;
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const key = input.value.trim();
        if (key) sessionStorage.setItem(KEY, key);
        resolve(Boolean(key));
      },
      { once: true },
    );
    dialog.showModal();
    input.focus();
  });
}

export function changeKey() {
  return askKey(false);
}

export async function call(path, init = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY);
    const headers = { "Content-Type": "application/json", ...(init.headers || {}) };
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(path, { ...init, headers });
    if (response.status !== 401) return response;
    if (!(await askKey(Boolean(key)))) return response;
  }
}

export async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error?.message || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// Calls onEvent with each JSON event of a run; resolves when the stream ends.
export async function streamRun(body, onEvent, signal) {
  const response = await call("/v1/moa/runs", {
    method: "POST",
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) {
    onEvent({ type: "error", error: { message: await errorMessage(response) } });
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6))
        .join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}
