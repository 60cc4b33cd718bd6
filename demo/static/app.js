// The demo chat page. No framework, no inline code: index.html loads this file and the
// official @microsoft/signalr browser bundle, and the page's CSP allows nothing else.
//
// Signed in or not? The session cookie is HttpOnly, so the page cannot (and must not)
// read it. It starts the hub connection instead: the browser sends the cookie with every
// negotiate and transport request, and a 401 from the hub means "show the sign-in form".
"use strict";

(() => {
  const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
  const ui = {
    state: byTestId("connection-state"),
    notice: byTestId("connection-notice"),
    noticeText: byTestId("connection-notice-text"),
    reconnect: byTestId("reconnect"),
    signin: byTestId("signin"),
    signinForm: byTestId("signin-form"),
    signinUsername: byTestId("signin-username"),
    signout: byTestId("signout-form"),
    chat: byTestId("chat"),
    messages: byTestId("messages"),
    sendForm: byTestId("send-form"),
    sendResult: byTestId("send-result"),
    name: byTestId("whoami-name"),
    userId: byTestId("whoami-userid"),
    roles: byTestId("whoami-roles"),
    connectionId: byTestId("whoami-connectionid"),
    session: byTestId("session-refreshed"),
    transport: byTestId("transport"),
    dmForm: byTestId("dm-form"),
    dmStatus: byTestId("dm-status"),
    directMessages: byTestId("direct-messages"),
    directMessagesEmpty: byTestId("direct-messages-empty"),
    banForm: byTestId("ban-form"),
    banResult: byTestId("ban-result"),
    historyForm: byTestId("history-form"),
    historyResult: byTestId("history-result"),
    historyItems: byTestId("history-items"),
  };
  const forms = [ui.sendForm, ui.dmForm, ui.banForm, ui.historyForm];

  if (typeof signalR === "undefined") {
    ui.state.dataset.state = "disconnected";
    ui.state.textContent = "Unavailable";
    ui.noticeText.textContent = "The SignalR client (/lib/signalr.min.js) did not load.";
    ui.notice.dataset.kind = "error";
    ui.notice.hidden = false;
    return;
  }

  // -- which transport: ?transport=WebSockets|ServerSentEvents|LongPolling -------------

  const TRANSPORTS = {
    websockets: "WebSockets",
    serversentevents: "ServerSentEvents",
    longpolling: "LongPolling",
  };
  // Signing in redirects to "/" (the query is lost): the choice survives the round trip
  // in sessionStorage and is put back into the address.
  const PENDING_TRANSPORT = "triohub.demo.transport";

  function requestedTransport() {
    const url = new URL(window.location.href);
    let raw = url.searchParams.get("transport");
    if (raw === null) {
      const pending = storage("get", PENDING_TRANSPORT);
      storage("remove", PENDING_TRANSPORT);
      if (pending) {
        url.searchParams.set("transport", pending);
        window.history.replaceState(null, "", url);
        raw = pending;
      }
    }
    if (!raw) return { name: undefined };
    const name = TRANSPORTS[raw.toLowerCase()];
    return name ? { name } : { name: undefined, unknown: raw };
  }

  function storage(verb, key, value) {
    try {
      if (verb === "get") return window.sessionStorage.getItem(key);
      if (verb === "set") window.sessionStorage.setItem(key, value);
      if (verb === "remove") window.sessionStorage.removeItem(key);
    } catch {
      // Storage can be disabled; the transport choice is a convenience only.
    }
    return null;
  }

  // -- what the client reports ----------------------------------------------------------

  // The bundle is minified (its transport classes have no readable names), so the
  // transport in use is taken from what the client itself logs when it picks one; the
  // last pick before a successful (re)start is the one that connected.
  class PageLogger {
    constructor() {
      this.selectedTransport = undefined;
    }

    log(level, message) {
      const picked = /^Selecting transport '(\w+)'/.exec(message);
      if (picked) this.selectedTransport = picked[1];
      if (level >= signalR.LogLevel.Error) console.error(`[signalr] ${message}`);
      else if (level >= signalR.LogLevel.Warning) console.warn(`[signalr] ${message}`);
    }
  }

  /** The HTTP status behind a failed start or reconnect (401, 403, ...), if any. */
  function httpStatus(error) {
    if (!error) return undefined;
    if (typeof error.statusCode === "number") return error.statusCode;
    const found = /Status code '(\d{3})'/.exec(String(error.message || error));
    return found ? Number(found[1]) : undefined;
  }

  /** The server's Close reason without the client's prefix ("Authentication expired."). */
  function closeReason(error) {
    const text = String((error && error.message) || error || "");
    return text.replace(/^Server returned an error on close: /, "");
  }

  // -- page state -------------------------------------------------------------------------

  function setState(state, label) {
    ui.state.dataset.state = state;
    ui.state.textContent = label;
    const connected = state === "connected";
    for (const form of forms) form.querySelector("fieldset").disabled = !connected;
  }

  function notify(text, { kind = "info", reconnect = false } = {}) {
    ui.notice.dataset.kind = kind;
    ui.noticeText.textContent = text;
    ui.reconnect.hidden = !reconnect;
    ui.notice.hidden = false;
  }

  function clearNotice() {
    ui.notice.hidden = true;
    ui.noticeText.textContent = "";
    ui.reconnect.hidden = true;
  }

  function showSignIn() {
    ui.chat.hidden = true;
    ui.signout.hidden = true;
    ui.signin.hidden = false;
    setState("signed-out", "Signed out");
    ui.signinUsername.focus();
  }

  function showChat() {
    ui.signin.hidden = true;
    ui.chat.hidden = false;
    ui.signout.hidden = false;
  }

  function showResult(element, outcome, text) {
    element.dataset.outcome = outcome;
    element.textContent = text;
    element.hidden = false;
  }

  function appendMessage(list, from, text, { mine = false, testId = "message" } = {}) {
    const item = document.createElement("li");
    item.dataset.testid = testId;
    if (mine) item.classList.add("mine");
    const sender = document.createElement("span");
    sender.className = "from";
    sender.dataset.testid = `${testId}-from`;
    sender.textContent = from;
    const body = document.createElement("span");
    body.className = "text";
    body.dataset.testid = `${testId}-text`;
    body.textContent = text;
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    item.append(sender, body, time);
    list.append(item);
    list.scrollTop = list.scrollHeight;
  }

  // -- the hub connection -------------------------------------------------------------------

  const transport = requestedTransport();
  const logger = new PageLogger();
  const RETRY_DELAYS = [0, 2000, 10000, 30000]; // the client's default policy
  let lastRetryReason;
  let me;
  let leaving = false;

  // -- the session, refreshed in place -----------------------------------------------------
  // The 10.0.x client has no refresh API, so the page does it. Halfway through the
  // session's lifetime it asks for a renewed cookie (POST /account/renew: the same
  // session, a full lifetime ahead) and hands it to the hub for this connection
  // (POST /hubs/chat/refresh?id=TOKEN): the connection, its transport and its groups
  // stay, and the server moves its expiry. The connection token and the session's
  // remaining lifetime come from the negotiate response, read through the client's
  // public httpClient option.

  let negotiated; // { connectionToken, tokenLifetimeSeconds } of the current connection
  let refreshTimer;

  class NegotiateReader extends signalR.DefaultHttpClient {
    async send(request) {
      const response = await super.send(request);
      if (request.method === "POST" && /\/negotiate$/.test(new URL(request.url, location.href).pathname)) {
        try {
          const body = JSON.parse(response.content);
          if (body.connectionToken) {
            negotiated = {
              connectionToken: body.connectionToken,
              tokenLifetimeSeconds: body.tokenLifetimeSeconds,
            };
          }
        } catch {
          // Not ours to judge: the client reports a bad negotiate response itself.
        }
      }
      return response;
    }
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    const lifetime = negotiated && negotiated.tokenLifetimeSeconds;
    if (typeof lifetime !== "number") return; // the server does not offer refresh
    refreshTimer = setTimeout(refreshSession, Math.max(1, lifetime / 2) * 1000);
  }

  function stopRefreshing() {
    clearTimeout(refreshTimer);
    refreshTimer = undefined;
  }

  async function refreshSession() {
    const current = negotiated;
    if (!current || connection.state !== signalR.HubConnectionState.Connected) return;
    const post = (url) => fetch(url, { method: "POST", credentials: "same-origin" });
    try {
      const renewed = await post("/account/renew");
      await renewed.text(); // read to the end: the request is done
      if (!renewed.ok) throw new Error(`the session could not be renewed (HTTP ${renewed.status})`);
      const id = encodeURIComponent(current.connectionToken);
      const answer = await post(`/hubs/chat/refresh?id=${id}`);
      const body = await answer.json().catch(() => ({}));
      if (!answer.ok) throw new Error(body.error_description || `HTTP ${answer.status}`);
      if (negotiated !== current) return; // reconnected meanwhile: that connection has its own
      current.tokenLifetimeSeconds = body.tokenLifetimeSeconds;
      const at = new Date(body.refreshedAt).toLocaleTimeString();
      ui.session.textContent = `Session refreshed at ${at}`;
      ui.session.dataset.refreshes = String(Number(ui.session.dataset.refreshes || 0) + 1);
      delete ui.session.dataset.outcome;
      scheduleRefresh();
    } catch (error) {
      // The connection ends when the session expires; withAutomaticReconnect takes over.
      ui.session.textContent = `Session refresh failed: ${error.message}`;
      ui.session.dataset.outcome = "error";
    }
  }

  const connection = new signalR.HubConnectionBuilder()
    .withUrl("/hubs/chat", {
      // undefined: the client's default order (WebSockets, then SSE, then long polling).
      transport: transport.name && signalR.HttpTransportType[transport.name],
      httpClient: new NegotiateReader(logger),
    })
    // A dropped WebSocket resumes on the same connection, nothing lost or repeated
    // (on any node of a cluster); only if that fails does the automatic reconnect start.
    .withStatefulReconnect()
    .withAutomaticReconnect({
      nextRetryDelayInMilliseconds(context) {
        lastRetryReason = context.retryReason;
        // Signed out or refused: retrying cannot help, so stop and say why at once.
        const status = httpStatus(context.retryReason);
        if (status === 401 || status === 403) return null;
        return RETRY_DELAYS[context.previousRetryCount] ?? null;
      },
    })
    .configureLogging(logger)
    .build();

  connection.on("ReceiveMessage", (name, message) => {
    appendMessage(ui.messages, name, message, { mine: me !== undefined && name === me.name });
  });

  connection.on("ReceiveDirectMessage", (fromUserId, message) => {
    ui.directMessagesEmpty.hidden = true;
    appendMessage(ui.directMessages, fromUserId, message, { testId: "direct-message" });
  });

  connection.onreconnecting((error) => {
    stopRefreshing();
    if (leaving) return;
    setState("reconnecting", "Reconnecting…");
    const why = error ? closeReason(error) : "the connection was lost.";
    notify(`Connection lost: ${why} Reconnecting…`, { kind: "warning" });
  });

  connection.onreconnected(async () => {
    lastRetryReason = undefined;
    notify("Reconnected.", { kind: "success" });
    await connected(); // a new connection id, and perhaps another transport
  });

  connection.onclose((error) => {
    stopRefreshing();
    if (leaving) return;
    const cause = error || lastRetryReason;
    lastRetryReason = undefined;
    if (refused(cause)) return;
    setState("disconnected", "Disconnected");
    const why = cause ? closeReason(cause) : "the server ended the connection.";
    notify(`Disconnected: ${why}`, { kind: "error", reconnect: true });
  });

  /** Handles a 401 (show the sign-in form) or 403; returns whether it did. */
  function refused(error) {
    const status = httpStatus(error);
    if (status === 401) {
      const hadSession = !ui.chat.hidden;
      showSignIn();
      if (hadSession) notify("Your session has ended. Please sign in again.", { kind: "warning" });
      else clearNotice();
      return true;
    }
    if (status === 403) {
      setState("denied", "Access denied");
      ui.signout.hidden = false;
      notify("Access denied (403): this account may not use the chat. Sign out to switch users.", {
        kind: "error",
      });
      return true;
    }
    return false;
  }

  async function start() {
    setState("connecting", "Connecting…");
    try {
      await connection.start();
    } catch (error) {
      if (!refused(error)) {
        setState("disconnected", "Disconnected");
        notify(`Could not connect: ${closeReason(error)}`, { kind: "error", reconnect: true });
      }
      return;
    }
    clearNotice();
    if (transport.unknown !== undefined) {
      notify(`Unknown transport '${transport.unknown}': using the client's default.`, {
        kind: "warning",
      });
    }
    await connected();
  }

  async function connected() {
    showChat();
    setState("connected", "Connected");
    scheduleRefresh();
    ui.transport.textContent = transportInUse();
    try {
      me = await connection.invoke("WhoAmI");
    } catch (error) {
      notify(`WhoAmI failed: ${error.message}`, { kind: "error" });
      return;
    }
    ui.name.textContent = me.name ?? "";
    ui.userId.textContent = me.userId ?? "(none)";
    ui.roles.textContent = me.roles.length ? me.roles.join(", ") : "(none)";
    ui.connectionId.textContent = me.connectionId;
  }

  function transportInUse() {
    if (logger.selectedTransport) return logger.selectedTransport;
    if (transport.name) return transport.name; // exactly one was allowed
    const features = connection.connection && connection.connection.features;
    return features && features.inherentKeepAlive ? "LongPolling" : "unknown";
  }

  // -- forms ------------------------------------------------------------------------------

  // A HubException is the hub refusing on purpose ("Unknown user 'zed'."): the reference's
  // wrapper around it says "unexpected", which it is not, so the page shows the hub's words.
  const HUB_EXCEPTION = /^An unexpected error occurred invoking '[^']*' on the server\. HubException: /;

  function refusal(error) {
    return String(error.message || error).replace(HUB_EXCEPTION, "");
  }

  /** Runs ``action`` on submit; a refusal is shown in the server's words. A status line
   * lasts until the next submit or edit of its form: never a stale one. */
  function onSubmit(form, resultElement, action) {
    const clear = () => {
      resultElement.hidden = true;
      resultElement.textContent = "";
      delete resultElement.dataset.outcome;
    };
    form.addEventListener("input", clear);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clear();
      const fields = Object.fromEntries(new FormData(form));
      try {
        const text = await action(fields);
        if (text !== undefined) showResult(resultElement, "ok", text);
      } catch (error) {
        showResult(resultElement, "error", refusal(error));
      }
    });
  }

  onSubmit(ui.sendForm, ui.sendResult, async ({ message }) => {
    await connection.invoke("SendMessage", message);
    ui.sendForm.reset();
    ui.sendForm.elements.message.focus();
    return undefined;
  });

  // SendToUser and BanUser answer with the user id they reached: the page names that user
  // only once the hub has found it (an unknown one is refused instead).
  onSubmit(ui.dmForm, ui.dmStatus, async ({ to, message }) => {
    const userId = await connection.invoke("SendToUser", to, message);
    ui.dmForm.elements.message.value = "";
    return `Sent to ${userId}.`;
  });

  onSubmit(ui.banForm, ui.banResult, async ({ user }) => {
    const userId = await connection.invoke("BanUser", user);
    return `Banned ${userId}: their connections were closed and new ones are refused.`;
  });

  onSubmit(ui.historyForm, ui.historyResult, async ({ user }) => {
    ui.historyItems.hidden = true;
    ui.historyItems.replaceChildren();
    const entries = await connection.invoke("ViewUserHistory", user);
    for (const entry of entries) {
      appendMessage(ui.historyItems, entry.user, entry.message, { testId: "history-item" });
    }
    ui.historyItems.hidden = entries.length === 0;
    const count = entries.length === 1 ? "1 message" : `${entries.length} messages`;
    return `${count} from ${user}.`;
  });

  ui.signinForm.addEventListener("submit", () => {
    if (transport.name) storage("set", PENDING_TRANSPORT, transport.name);
  });

  // Leaving the page closes the connection; that is no news worth a notice.
  ui.signout.addEventListener("submit", () => {
    leaving = true;
  });
  window.addEventListener("pagehide", () => {
    leaving = true;
  });
  window.addEventListener("pageshow", () => {
    leaving = false;
  });

  ui.reconnect.addEventListener("click", () => {
    ui.reconnect.hidden = true;
    start();
  });

  start();
})();
