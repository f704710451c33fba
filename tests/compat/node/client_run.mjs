// Dify's official Node client (dify-client), unchanged, against a live dify-platform: every route
// a chat client calls, with an uploaded file. Routes the client has no method for are called
// through its own sendRequest, as its users do. Prints what came back as one JSON document for
// tests/compat/test_node_client.py to check.
//
//   DIFY_BASE_URL=http://127.0.0.1:8000/v1 DIFY_API_KEY=app-... node client_run.mjs
import { ChatClient } from "dify-client";

const client = new ChatClient(process.env.DIFY_API_KEY, process.env.DIFY_BASE_URL);
const user = "node-user";

async function outcome(call) {
  try {
    const response = await call();
    return { status: response.status, data: response.data };
  } catch (error) {
    if (!error.response) throw error;
    return { status: error.response.status, data: error.response.data };
  }
}

async function bytesOf(call) {
  const response = await call();
  const parts = [];
  for await (const part of response.data) parts.push(part);
  return { status: response.status, type: response.headers["content-type"], body: Buffer.concat(parts) };
}

function form(name, content, type) {
  const data = new FormData();
  data.append("file", new Blob([content], { type }), name);
  data.append("user", user);
  return data;
}

const document = Buffer.from("Bergen is the rainiest city in Norway.\n", "utf-8");
const result = {};

result.parameters = await outcome(() => client.getApplicationParameters(user));
result.upload = await outcome(() => client.fileUpload(form("notes.txt", document, "text/plain")));
const fileId = result.upload.data.id;

const preview = await bytesOf(() =>
  client.sendRequest("GET", `/files/${fileId}/preview`, null, { user }, true),
);
result.preview = { status: preview.status, type: preview.type, same: preview.body.equals(document) };

result.chat = await outcome(() =>
  client.createChatMessage({}, "Which city is the rainiest?", user, false, null, [
    { type: "document", transfer_method: "local_file", upload_file_id: fileId },
  ]),
);
const messageId = result.chat.data.message_id;
const conversationId = result.chat.data.conversation_id;

result.messages = await outcome(() => client.getConversationMessages(user, conversationId));
result.suggested = await outcome(() =>
  client.sendRequest("GET", `/messages/${messageId}/suggested`, null, { user }),
);
result.feedback = await outcome(() => client.messageFeedback(messageId, "like", user));
result.feedbacks = await outcome(() =>
  client.sendRequest("GET", "/app/feedbacks", null, { page: 1, limit: 20 }),
);
result.site = await outcome(() => client.sendRequest("GET", "/site"));
result.endUser = await outcome(() =>
  client.sendRequest("GET", `/end-users/${result.upload.data.created_by}`),
);

// What a client must be told, not left to guess.
result.tooLarge = await outcome(() =>
  client.fileUpload(form("big.txt", Buffer.alloc(2 * 1024 * 1024 + 1, 97), "text/plain")),
);
result.wrongType = await outcome(() =>
  client.fileUpload(form("tool.exe", Buffer.from("MZ"), "application/octet-stream")),
);
result.stranger = await outcome(() =>
  client.createChatMessage({}, "And this?", "someone-else", false, null, [
    { type: "document", transfer_method: "local_file", upload_file_id: fileId },
  ]),
);
result.privateUrl = await outcome(() =>
  client.createChatMessage({}, "And this?", user, false, null, [
    { type: "document", transfer_method: "remote_url", url: "http://169.254.169.254/latest.txt" },
  ]),
);

console.log(JSON.stringify(result));
