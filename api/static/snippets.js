// The current request as ready-to-copy code: curl, Python (fal-client, darkroom) and JavaScript.
// The key never appears in a snippet: they read it from $DARKROOM_API_KEY / FAL_KEY.

function pyLiteral(value, indent = "") {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") return String(value);
  const inner = indent + "    ";
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => inner + pyLiteral(v, inner)).join(",\n")},\n${indent}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${pyLiteral(v, inner)}`).join(",\n")},\n${indent}}`;
}

function shellQuote(text) {
  return `'${text.replace(/'/g, `'"'"'`)}'`;
}

function curl({ server, app, body, withKey }) {
  const auth = withKey ? ' -H "Authorization: Key $DARKROOM_API_KEY"' : "";
  return `# submit, then follow the status stream until COMPLETED, then fetch the result
SUBMIT=$(curl -s -X POST ${shellQuote(`${server}/${app}`)}${auth} \\
  -H 'Content-Type: application/json' \\
  -d ${shellQuote(JSON.stringify(body, null, 2))})
echo "$SUBMIT"
STATUS_URL=$(printf '%s' "$SUBMIT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status_url"])')
curl -sN${auth} "$STATUS_URL/stream?logs=1"
curl -s${auth} "\${STATUS_URL%/status}"   # the result: {"images": [{"url": …}], …}`;
}

// fal-client builds https:// URLs whatever the host, so against a plain-HTTP server (`darkroom up`)
// it hangs; the snippet says so and what to do instead.
function falTlsNote(server) {
  if (server.startsWith("https:")) return "";
  return `# fal-client always connects with https://, so against this plain-HTTP server
# (${server}) it hangs. To run this snippet, serve Darkroom over TLS
# (DARKROOM_TLS_CERTFILE + DARKROOM_TLS_KEYFILE, or a reverse proxy in front:
# docs/api.md, "TLS") and put that https host in FAL_QUEUE_RUN_HOST below.
# Over plain HTTP, use the "Python (darkroom)" or "curl" snippet instead.
`;
}

function pythonFal({ server, app, body }) {
  const host = new URL(server).host;
  return `${falTlsNote(server)}import os

os.environ["FAL_QUEUE_RUN_HOST"] = ${JSON.stringify(host)}  # set before importing fal_client
os.environ.setdefault("FAL_KEY", os.environ.get("DARKROOM_API_KEY", "unused"))

import fal_client

result = fal_client.subscribe(
    ${JSON.stringify(app)},
    arguments=${pyLiteral(body, "    ")},
    with_logs=True,
    on_queue_update=print,
)
print(result["images"][0]["url"])`;
}

function pythonDarkroom({ server, app, body }) {
  return `# darkroom.client ships with Darkroom and needs only httpx; the key is read from $DARKROOM_API_KEY
from darkroom.client import Client

with Client(${JSON.stringify(server)}) as client:
    result = client.subscribe(
        ${JSON.stringify(app)},
        ${pyLiteral(body, "        ")},
        on_update=lambda status: print(status.status, status.queue_position or ""),
    )
    image = result.images[0]
    with open("result.png", "wb") as out:
        out.write(client.download(image.url))
    print(image.url, image.width, image.height)`;
}

function javascript({ server, app, body }) {
  const input = JSON.stringify(body, null, 2).replace(/\n/g, "\n  ");
  return `import { fal } from "@fal-ai/client";  // 1.10 or later (proxyUrl as an object)

// Darkroom serves fal's proxy route; the key is sent as "Authorization: Key …".
// when: "always" — a plain string proxyUrl is used only in browsers: in Node the
// client would send the requests (and the key) to fal itself.
fal.config({
  proxyUrl: { url: ${JSON.stringify(`${server}/api/fal/proxy`)}, when: "always" },
  credentials: process.env.DARKROOM_API_KEY,
});

const result = await fal.subscribe(${JSON.stringify(app)}, {
  input: ${input},
  logs: true,
  onQueueUpdate: (update) => console.log(update.status, update.queue_position ?? ""),
});
console.log(result.data.images[0].url);`;
}

export const SNIPPETS = [
  { id: "json", label: "JSON", render: ({ body }) => JSON.stringify(body, null, 2) },
  { id: "curl", label: "curl", render: curl },
  { id: "python-fal", label: "Python (fal-client)", render: pythonFal },
  { id: "python", label: "Python (darkroom)", render: pythonDarkroom },
  { id: "js", label: "JavaScript", render: javascript },
];
