// The chat page: conversations over REST (/v1/conversations, /v1/messages), questions and
// streamed answers over the WebSocket (/ws/v1/chat). Plain browser JavaScript, no build step.
// Everything the server or the user wrote is put in the page as text, never as HTML.
// Who the user is comes from the server: the page was served with an end-user session (an
// HttpOnly cookie this script cannot read); every call names the app by its share code.
"use strict";

(() => {
  const RECONNECT_MAX_MS = 5000;
  const NEAR_BOTTOM_PX = 80;

  const $ = (id) => document.getElementById(id);
  const el = {
    conversationList: $("conversation-list"),
    conversationsEmpty: $("conversations-empty"),
    newChat: $("new-chat"),
    accountUser: $("account-user"),
    accountStatus: $("account-status"),
    statusDot: $("status-dot"),
    title: $("title"),
    notice: $("notice"),
    thread: $("thread"),
    welcome: $("welcome"),
    turns: $("turns"),
    composer: $("composer"),
    question: $("question"),
    send: $("send"),
    stop: $("stop"),
  };

  const page = document.body.dataset;
  const state = {
    code: page.shareCode || "",
    user: page.userLabel || "Guest",
    mode: page.mode || "chat",
    socket: null,
    ready: false,
    refused: false, // the server refused the session: reconnecting would not help
    reconnectMs: 500,
    reconnectTimer: null,
    conversations: [],
    conversationId: null, // null: a new conversation, created by the first question
    // Answers being generated, by request id: {requestId, conversationId, taskId, lastEventId,
    // turn, answer, stopRequested}. They outlive the socket: a reconnect resumes them.
    generations: new Map(),
    requestCounter: 0,
    historyToken: 0,
  };

  // ---- REST ------------------------------------------------------------------------------------

  async function api(path, params) {
    const url = new URL(path, location.origin);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
    const response = await fetch(url, {
      headers: { "X-App-Code": state.code },
      credentials: "same-origin",
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const error = new Error((body && body.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  async function loadConversations() {
    if (!state.code || state.mode !== "chat") {
      state.conversations = [];
      renderConversations();
      return;
    }
    try {
      const body = await api("/v1/conversations", { limit: "100" });
      state.conversations = Array.isArray(body && body.data) ? body.data : [];
    } catch (error) {
      // A platform without the conversation list yet answers 404: show none, quietly.
      state.conversations = [];
      if (error.status !== 404) showNotice(`Could not load conversations: ${error.message}`);
    }
    renderConversations();
  }

  async function loadHistory(conversationId) {
    const token = ++state.historyToken;
    clearThread();
    try {
      const body = await api("/v1/messages", {
        conversation_id: conversationId,
        limit: "100",
      });
      if (token !== state.historyToken) return; // another conversation was chosen meanwhile
      const live = new Set([...state.generations.values()].map((g) => g.messageId));
      // Oldest first within the page, as Dify returns them.
      for (const message of (body && body.data) || []) {
        if (live.has(message.id)) continue;
        const turn = addTurn(message.query || "");
        setAnswer(turn, message.answer || "");
        if (message.status === "stopped") addNote(turn, "Stopped");
        else if (message.status === "error") addError(turn, message.error || "The answer failed.");
        else if (message.status === "pending" && !message.answer) addNote(turn, "Still being answered…");
        finishTurn(turn);
      }
    } catch (error) {
      if (token === state.historyToken) showNotice(`Could not load the conversation: ${error.message}`);
    }
    // Answers still streaming in this conversation go back at the end of the thread.
    for (const generation of state.generations.values()) {
      if (generation.conversationId === conversationId) el.turns.append(generation.turn);
    }
    updateComposer();
    scrollToBottom(true);
  }

  // ---- WebSocket -------------------------------------------------------------------------------

  function connect() {
    if (!state.code || state.socket) return;
    clearTimeout(state.reconnectTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // The browser sends the session cookie with the handshake; the code names the app.
    const code = encodeURIComponent(state.code);
    const socket = new WebSocket(`${scheme}//${location.host}/ws/v1/chat?app_code=${code}`);
    state.socket = socket;
    setStatus("connecting");
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      onFrame(frame);
    });
    socket.addEventListener("close", (event) => onClose(socket, event));
  }

  function onClose(socket, event) {
    if (state.socket !== socket) return;
    state.socket = null;
    state.ready = false;
    if (event.code === 4401 || event.code === 4403) {
      state.refused = true;
      setStatus("refused");
      const reason =
        event.code === 4403
          ? "This app is disabled."
          : "This chat session is no longer valid: reload the page (or ask for a new link).";
      showNotice(reason);
      return;
    }
    setStatus("reconnecting");
    // Answers whose question was never confirmed cannot be resumed: say so.
    for (const generation of state.generations.values()) {
      if (!generation.taskId) {
        addError(generation.turn, "The connection dropped before the question was received; send it again.");
        endGeneration(generation);
      }
    }
    state.reconnectTimer = setTimeout(connect, state.reconnectMs);
    state.reconnectMs = Math.min(state.reconnectMs * 2, RECONNECT_MAX_MS);
    updateComposer();
  }

  function sendFrame(frame) {
    if (!state.socket || !state.ready) return false;
    state.socket.send(JSON.stringify(frame));
    return true;
  }

  function onFrame(frame) {
    if (frame.type === "ready") return onReady(frame);
    const generation = frame.request_id != null ? state.generations.get(frame.request_id) : null;
    if (frame.type === "error") {
      if (generation) {
        addError(generation.turn, frame.message || "The question was refused.");
        endGeneration(generation);
      } else {
        showNotice(frame.message || "Something went wrong.");
      }
      return;
    }
    if (!generation) return;
    if (frame.type === "accepted") return onAccepted(generation, frame);
    if (frame.event_id) generation.lastEventId = frame.event_id;
    switch (frame.event) {
      case "message":
        generation.answer += frame.answer || "";
        setAnswer(generation.turn, generation.answer);
        break;
      case "message_replace":
        generation.answer = frame.answer || "";
        setAnswer(generation.turn, generation.answer);
        break;
      case "message_end":
        if (generation.stopRequested) addNote(generation.turn, "Stopped");
        endGeneration(generation);
        loadConversations();
        break;
      case "error":
        addError(generation.turn, frame.message || "The answer failed.");
        endGeneration(generation);
        break;
      default:
        break;
    }
  }

  function onReady(frame) {
    state.ready = true;
    if (state.refused) hideNotice(); // the refusal it explained is over
    state.refused = false;
    state.reconnectMs = 500;
    state.mode = frame.mode || "chat";
    setStatus("online");
    // After a reconnect: pick every answer up again right after the last event we saw.
    for (const generation of state.generations.values()) {
      sendFrame({
        type: "resume",
        task_id: generation.taskId,
        last_event_id: generation.lastEventId || "0-0",
        request_id: generation.requestId,
      });
      if (generation.stopRequested) sendStop(generation);
    }
    updateComposer();
    loadConversations();
  }

  function onAccepted(generation, frame) {
    generation.taskId = frame.task_id;
    generation.messageId = frame.message_id;
    if (frame.conversation_id && !generation.conversationId) {
      generation.conversationId = frame.conversation_id;
      if (state.conversationId === null && isShowingDraft(generation)) {
        state.conversationId = frame.conversation_id;
        history.replaceState(null, "", `#${frame.conversation_id}`);
        loadConversations();
      }
    }
    if (generation.stopRequested) sendStop(generation);
    updateComposer();
  }

  function isShowingDraft(generation) {
    return generation.turn.isConnected;
  }

  // ---- Asking and stopping ---------------------------------------------------------------------

  function ask() {
    const query = el.question.value;
    if (!query.trim() || !state.ready || currentGeneration()) return;
    const requestId = `q${++state.requestCounter}`;
    const frame = { type: "query", query, inputs: {}, request_id: requestId };
    if (state.mode === "chat" && state.conversationId) frame.conversation_id = state.conversationId;
    if (!sendFrame(frame)) return;
    const turn = addTurn(query);
    turn.classList.add("generating");
    state.generations.set(requestId, {
      requestId,
      conversationId: state.mode === "chat" ? state.conversationId : null,
      taskId: null,
      messageId: null,
      lastEventId: null,
      turn,
      answer: "",
      stopRequested: false,
    });
    el.question.value = "";
    resizeQuestion();
    updateComposer();
    scrollToBottom(true);
  }

  function stop() {
    const generation = currentGeneration();
    if (!generation || generation.stopRequested) return;
    generation.stopRequested = true;
    if (generation.taskId) sendStop(generation);
    updateComposer();
  }

  function sendStop(generation) {
    if (generation.taskId) sendFrame({ type: "stop", task_id: generation.taskId });
  }

  function endGeneration(generation) {
    state.generations.delete(generation.requestId);
    finishTurn(generation.turn);
    updateComposer();
  }

  // The answer being written in the conversation on screen, if any.
  function currentGeneration() {
    for (const generation of state.generations.values()) {
      if (generation.turn.isConnected) return generation;
    }
    return null;
  }

  // ---- Rendering -------------------------------------------------------------------------------

  function addTurn(query) {
    const turn = document.createElement("li");
    turn.className = "turn";
    const question = document.createElement("div");
    question.className = "bubble question";
    question.textContent = query;
    const answer = document.createElement("div");
    answer.className = "answer";
    const avatar = document.createElement("span");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = "AI";
    const body = document.createElement("div");
    body.className = "answer-body";
    const text = document.createElement("div");
    text.className = "answer-text";
    const typing = document.createElement("span");
    typing.className = "typing";
    typing.setAttribute("aria-label", "Writing");
    typing.append(...[0, 1, 2].map(() => document.createElement("i")));
    body.append(text, typing);
    answer.append(avatar, body);
    turn.append(question, answer);
    el.turns.append(turn);
    el.welcome.hidden = true;
    return turn;
  }

  function setAnswer(turn, text) {
    const follow = isNearBottom();
    turn.querySelector(".answer-text").textContent = text;
    if (follow) scrollToBottom(false);
  }

  function addNote(turn, text) {
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = text;
    turn.querySelector(".answer-body").append(note);
  }

  function addError(turn, text) {
    const error = document.createElement("p");
    error.className = "error";
    error.setAttribute("role", "alert");
    error.textContent = text;
    turn.querySelector(".answer-body").append(error);
    scrollToBottom(false);
  }

  function finishTurn(turn) {
    turn.classList.remove("generating");
    const typing = turn.querySelector(".typing");
    if (typing) typing.remove();
    const text = turn.querySelector(".answer-text");
    if (!text.textContent && !turn.querySelector(".error, .note")) addNote(turn, "No answer.");
  }

  function clearThread() {
    el.turns.replaceChildren();
    el.welcome.hidden = false;
    hideNotice();
  }

  function renderConversations() {
    const items = state.conversations.map((conversation) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "conversation";
      button.dataset.id = conversation.id;
      if (conversation.id === state.conversationId) button.setAttribute("aria-current", "true");
      const name = document.createElement("span");
      name.className = "conversation-name";
      name.textContent = conversation.name || "Untitled";
      const when = document.createElement("span");
      when.className = "conversation-when";
      when.textContent = relativeTime(conversation.updated_at || conversation.created_at);
      button.append(name, when);
      button.addEventListener("click", () => openConversation(conversation.id));
      item.append(button);
      return item;
    });
    el.conversationList.replaceChildren(...items);
    el.conversationsEmpty.hidden = items.length > 0;
    el.conversationsEmpty.textContent =
      state.mode === "chat" ? "No conversations yet." : "This app answers single questions.";
    const current = state.conversations.find((c) => c.id === state.conversationId);
    el.title.textContent = current ? current.name || "Untitled" : "New conversation";
  }

  function openConversation(conversationId) {
    state.conversationId = conversationId;
    history.replaceState(null, "", conversationId ? `#${conversationId}` : location.pathname);
    renderConversations();
    if (conversationId) loadHistory(conversationId);
    else {
      state.historyToken++;
      clearThread();
      updateComposer();
    }
    el.question.focus();
  }

  function updateComposer() {
    const generating = currentGeneration();
    el.send.disabled = !state.ready || Boolean(generating) || !el.question.value.trim();
    el.send.hidden = Boolean(generating);
    el.stop.hidden = !generating;
    el.stop.disabled = Boolean(generating && generating.stopRequested);
    el.stop.textContent = generating && generating.stopRequested ? "Stopping…" : "Stop";
    el.thread.setAttribute("aria-busy", generating ? "true" : "false");
  }

  function setStatus(status) {
    const labels = {
      connecting: "Connecting…",
      online: "Connected",
      reconnecting: "Reconnecting…",
      refused: "Session ended",
      offline: "Offline",
    };
    el.statusDot.dataset.status = status;
    el.accountStatus.textContent = labels[status] || status;
    el.accountUser.textContent = state.user;
  }

  function showNotice(text) {
    el.notice.textContent = text;
    el.notice.hidden = false;
  }

  function hideNotice() {
    el.notice.hidden = true;
  }

  function isNearBottom() {
    const t = el.thread;
    return t.scrollHeight - t.scrollTop - t.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToBottom(force) {
    if (force || isNearBottom()) el.thread.scrollTop = el.thread.scrollHeight;
  }

  function relativeTime(seconds) {
    if (!seconds) return "";
    const delta = Date.now() / 1000 - seconds;
    if (delta < 60) return "just now";
    if (delta < 3600) return `${Math.floor(delta / 60)} min ago`;
    if (delta < 86400) return `${Math.floor(delta / 3600)} h ago`;
    return new Date(seconds * 1000).toLocaleDateString();
  }

  function resizeQuestion() {
    el.question.style.height = "auto";
    el.question.style.height = `${Math.min(el.question.scrollHeight, 200)}px`;
  }

  // ---- Wiring ----------------------------------------------------------------------------------

  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  el.question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask();
    }
  });
  el.question.addEventListener("input", () => {
    resizeQuestion();
    updateComposer();
  });
  el.stop.addEventListener("click", stop);
  el.newChat.addEventListener("click", () => openConversation(null));

  setStatus("offline");
  renderConversations();
  updateComposer();
  connect();
  const fromHash = location.hash.slice(1);
  if (/^[0-9a-f-]{36}$/i.test(fromHash)) openConversation(fromHash);
})();
