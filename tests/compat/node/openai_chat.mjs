// OpenAI's official Node SDK (openai), unchanged, against a live dify-platform's OpenAI routes: a
// blocking chat completion with a whole conversation, a streamed one with its usage chunk, the
// models list, and the errors the SDK turns into its classes. Prints what came back as one JSON
// document for tests/compat/test_node_openai_client.py to check.
//
//   node openai_chat.mjs http://127.0.0.1:8000/v1 app-... model-name
//   (or OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL in the environment)
import OpenAI from "openai";

const [
  baseURL = process.env.OPENAI_BASE_URL,
  apiKey = process.env.OPENAI_API_KEY,
  model = process.env.OPENAI_MODEL,
] = process.argv.slice(2);
if (!baseURL || !apiKey || !model) {
  console.error("usage: node openai_chat.mjs BASE_URL API_KEY MODEL");
  process.exit(2);
}

// No retries: a refusal must reach the test as it was sent, not be papered over.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const TASK_HEADER = "x-task-id";

// What the SDK makes of a refusal: its class, and the fields of OpenAI's error envelope.
async function refusal(call) {
  try {
    await call();
  } catch (error) {
    if (!(error instanceof OpenAI.APIError)) throw error;
    return {
      class: error.constructor.name,
      notFound: error instanceof OpenAI.NotFoundError,
      authentication: error instanceof OpenAI.AuthenticationError,
      status: error.status,
      code: error.code,
      type: error.type,
      param: error.param,
      message: error.message,
    };
  }
  return null;
}

const result = {};

// 1. Blocking, with the client's whole conversation (system, user, assistant, user).
const blocking = await client.chat.completions
  .create({
    model,
    messages: [
      { role: "system", content: "Answer briefly." },
      { role: "user", content: "Which city?" },
      { role: "assistant", content: "In Norway?" },
      { role: "user", content: "Yes, the rainiest." },
    ],
    user: "node-user",
  })
  .withResponse();
result.blocking = { taskId: blocking.response.headers.get(TASK_HEADER), completion: blocking.data };

// 2. Streamed, usage included: every chunk as the SDK parsed it, in order.
const streamed = await client.chat.completions
  .create({
    model,
    messages: [{ role: "user", content: "Which city?" }],
    stream: true,
    stream_options: { include_usage: true },
  })
  .withResponse();
const chunks = [];
for await (const chunk of streamed.data) chunks.push(chunk);
result.stream = {
  taskId: streamed.response.headers.get(TASK_HEADER),
  contentType: streamed.response.headers.get("content-type"),
  chunks,
};

// 3. The models the key may name: the page's items, through the SDK's auto-pagination.
const models = [];
for await (const listed of client.models.list()) models.push(listed);
result.models = models;

// 4. What the SDK throws for a model the app does not have, and for a key that does not exist.
result.wrongModel = await refusal(() =>
  client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "Hi" }] }),
);
result.wrongKey = await refusal(() =>
  new OpenAI({ baseURL, apiKey: "app-not-a-key", maxRetries: 0 }).chat.completions.create({
    model,
    messages: [{ role: "user", content: "Hi" }],
  }),
);

process.stdout.write(JSON.stringify(result) + "\n");
