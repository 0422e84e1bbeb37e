// The logged-in screen: the conversation list (unread counts, presence dots), a form to start a
// direct conversation, and the chat pane (optimistic messages, ticks, typing, composer).

import type { ClientMessage, ConversationView, LatencySample, ParleyClient, User } from "@parley/client";
import { h, mount, timeOf } from "./dom.js";
import { describe } from "./login.js";
import { attachButton, MediaViews, PendingUploads } from "./media.js";
import { VoiceRecorder } from "./voice.js";

export class ChatView {
  readonly #client: ParleyClient;
  readonly #me: User;
  readonly #media: MediaViews;
  readonly #uploads: PendingUploads;
  readonly #list = h("ul", { className: "convs", testid: "conversation-list" });
  readonly #latency = h("span", { className: "latency", testid: "latency" }, "latency –");
  readonly #error = h("p", { className: "error", testid: "app-error", role: "alert" });
  readonly #header = h("header", { testid: "chat-header" });
  readonly #messages = h("div", { className: "messages", testid: "messages" });
  readonly #typing = h("span", { className: "typing", testid: "typing-indicator" });
  readonly #input = h("input", {
    testid: "composer-input",
    placeholder: "Write a message",
    maxlength: 4000,
    autocomplete: "off",
  });
  readonly #pane = h("section", { className: "pane", testid: "chat-pane" });
  #active: string | null = null;
  /** Records into the open conversation; a change of conversation cancels its recording. */
  readonly #recorder: VoiceRecorder;
  /** The highest seq this page asked to mark read, per conversation (no request twice). */
  readonly #readAsked = new Map<string, number>();
  readonly #typingNames = new Map<string, readonly string[]>();

  constructor(client: ParleyClient, me: User, apiUrl: string, logout: () => void) {
    this.#client = client;
    this.#me = me;
    this.#media = new MediaViews(apiUrl, (m) => this.#reread(m));
    this.#uploads = new PendingUploads(client, (id) => {
      if (id === this.#active) this.messages(id, client.messages(id));
    });
    this.#recorder = new VoiceRecorder(
      () => this.#active,
      (conversationId, recording) => this.#uploads.send(conversationId, recording),
      (e) => this.error(e),
    );
    const newChat = h("input", {
      testid: "new-chat-input",
      placeholder: "username to chat with",
      autocomplete: "off",
    });
    const side = h(
      "aside",
      { className: "side" },
      h(
        "div",
        { className: "me" },
        h("strong", { testid: "me" }, h("bdi", {}, me.displayName)),
        this.#latency,
        h("button", { testid: "logout-button", onclick: logout }, "Log out"),
      ),
      h(
        "form",
        {
          className: "newchat",
          onsubmit: (event: Event) => {
            event.preventDefault();
            void this.#startDirect(newChat.value.trim()).then(() => (newChat.value = ""));
          },
        },
        newChat,
        h("button", { testid: "new-chat-button", type: "submit" }, "Chat"),
      ),
      this.#error,
      this.#list,
    );
    this.#input.addEventListener("input", () => {
      if (!this.#active) return;
      if (this.#input.value) client.typing(this.#active);
      else client.stopTyping(this.#active);
    });
    this.root = h("div", { className: "shell" }, side, h("main", { className: "main" }, this.#pane));
    this.#renderPane();
  }

  readonly root: HTMLElement;

  /** The view is going away (log-out): a recording in progress is dropped, the microphone freed. */
  dispose(): void {
    this.#recorder.cancel();
  }

  /** The conversation list changed (the SDK's view: new ones, last messages, unread counts). */
  conversations(list: readonly ConversationView[]): void {
    mount(this.#list, list.map((c) => this.#item(c)));
    if (this.#active) this.#renderHeader();
    // The open conversation counts too while the tab is hidden: nothing is marked read then.
    const unread = list.reduce((n, c) => n + (this.#onScreen(c.id) ? 0 : c.unreadCount), 0);
    document.title = unread > 0 ? `(${unread}) Parley` : "Parley";
  }

  /** Whether the conversation is the one open on a visible page (its messages are being read). */
  #onScreen(conversationId: string): boolean {
    return conversationId === this.#active && document.visibilityState === "visible";
  }

  messages(conversationId: string, list: readonly ClientMessage[]): void {
    if (conversationId !== this.#active) return;
    const atBottom =
      this.#messages.scrollHeight - this.#messages.scrollTop - this.#messages.clientHeight < 40;
    // seq runs 1, 2, 3… with no gap: older messages exist when the oldest listed is not 1.
    const oldest = list.find((m) => m.seq !== null)?.seq ?? 1;
    const older = oldest > 1
      ? h("button", { className: "older", testid: "load-older", onclick: () => void this.#loadOlder() }, "Load earlier messages")
      : null;
    mount(this.#messages, older, list.map((m) => this.#message(m)), this.#uploads.views(conversationId));
    if (atBottom || list.at(-1)?.mine) this.#messages.scrollTop = this.#messages.scrollHeight;
    if (document.visibilityState === "visible") this.#markRead(conversationId, list);
  }

  /** The tab was hidden or shown: the title's count; what a visible page shows is read now. */
  visibility(): void {
    if (this.#active && document.visibilityState === "visible") {
      this.messages(this.#active, this.#client.messages(this.#active));
    }
    this.conversations(this.#client.conversations);
  }

  typing(conversationId: string, userIds: readonly string[]): void {
    this.#typingNames.set(conversationId, userIds);
    if (conversationId === this.#active) this.#renderTyping();
  }

  /** Someone's presence changed: the dots follow the SDK's view. */
  presence(): void {
    this.conversations(this.#client.conversations);
  }

  latency(sample: LatencySample): void {
    this.#latency.textContent = `${Math.round(sample.latencyMs)} ms${sample.slow ? " (slow network)" : ""}`;
    this.#latency.classList.toggle("slow", sample.slow);
    this.#latency.dataset.ms = String(Math.round(sample.latencyMs));
  }

  error(error: unknown): void {
    this.#error.textContent = describe(error);
  }

  clearError(): void {
    this.#error.textContent = "";
  }

  /** Open a conversation: its messages (history loaded by the SDK) and the composer. */
  async open(conversationId: string): Promise<void> {
    if (conversationId !== this.#active) {
      this.#recorder.cancel();
      this.#media.clear();
    }
    this.#active = conversationId;
    this.#renderPane();
    this.conversations(this.#client.conversations);
    try {
      await this.#client.loadHistory(conversationId);
    } catch (e) {
      this.error(e);
    }
    if (this.#active === conversationId) this.messages(conversationId, this.#client.messages(conversationId));
  }

  /** Shown on a visible page: mark read up to the newest message from others, once. */
  #markRead(conversationId: string, list: readonly ClientMessage[]): void {
    let newest = 0;
    for (const m of list) if (!m.mine && m.seq !== null && m.seq > newest) newest = m.seq;
    const c = this.#client.conversations.find((x) => x.id === conversationId);
    const read = c?.members.find((m) => m.user.id === this.#me.id)?.readUpToSeq ?? 0;
    if (newest <= Math.max(read, this.#readAsked.get(conversationId) ?? 0)) return;
    this.#readAsked.set(conversationId, newest);
    this.#client.markRead(conversationId, newest).catch((e) => {
      this.#readAsked.delete(conversationId); // asked again with the next change
      this.error(e);
    });
  }

  /** Page back: the messages before the oldest one listed. */
  async #loadOlder(): Promise<void> {
    const id = this.#active;
    if (!id) return;
    const first = this.#client.messages(id).find((m) => m.seq !== null)?.seq;
    try {
      await this.#client.loadHistory(id, first ? { beforeSeq: first } : {});
      if (this.#active !== id) return;
      const height = this.#messages.scrollHeight;
      this.messages(id, this.#client.messages(id));
      this.#messages.scrollTop = this.#messages.scrollHeight - height; // keep the reader's place
    } catch (e) {
      this.error(e);
    }
  }

  async #startDirect(username: string): Promise<void> {
    if (!username) return;
    this.#error.textContent = "";
    try {
      const users = await this.#client.searchUsers(username, 50);
      const user = users.find((u) => u.username === username.toLowerCase());
      if (!user) throw new Error(`No user named ${username}`);
      if (user.id === this.#me.id) throw new Error("That is you: pick someone else");
      const conversation = await this.#client.openDirect(user.id);
      await this.open(conversation.id);
    } catch (e) {
      this.error(e);
    }
  }

  #title(c: ConversationView): string {
    if (c.title) return c.title;
    const others = c.members.filter((m) => m.user.id !== this.#me.id);
    return others.map((m) => m.user.displayName).join(", ") || "Just you";
  }

  /** The title as elements: each display name isolated (a name's bidi controls stay in it). */
  #titleView(c: ConversationView): Node[] {
    if (c.title) return [h("bdi", {}, c.title)];
    const others = c.members.filter((m) => m.user.id !== this.#me.id);
    if (others.length === 0) return [document.createTextNode("Just you")];
    return others.flatMap((m, i) => [...(i ? [document.createTextNode(", ")] : []), h("bdi", {}, m.user.displayName)]);
  }

  /**
   * An image or voice note did not load (its signed URLs expire after an hour): read that
   * message again for fresh ones (the SDK takes them; the view follows). Resolves with the
   * message as the list then holds it.
   */
  async #reread(m: ClientMessage): Promise<ClientMessage | undefined> {
    const page = m.seq !== null ? { beforeSeq: m.seq + 1, limit: 1 } : {};
    try {
      await this.#client.loadHistory(m.conversationId, page);
    } catch (e) {
      this.error(e);
    }
    return this.#client.messages(m.conversationId).find((x) => x.clientMsgId === m.clientMsgId && x.senderId === m.senderId);
  }

  #other(c: ConversationView): string | null {
    if (c.kind !== "direct") return null;
    return c.members.find((m) => m.user.id !== this.#me.id)?.user.id ?? null;
  }

  #item(c: ConversationView): HTMLElement {
    const other = this.#other(c);
    const online = other ? (this.#client.presence(other)?.online ?? false) : false;
    const unread = this.#onScreen(c.id) ? 0 : c.unreadCount;
    return h(
      "li",
      {
        className: `conv${c.id === this.#active ? " active" : ""}`,
        testid: "conversation-item",
        "data-conversation-id": c.id,
        "data-title": this.#title(c),
        onclick: () => void this.open(c.id),
      },
      h("span", {
        className: `dot${online ? " online" : ""}`,
        testid: "presence-dot",
        "data-online": String(online),
        title: online ? "online" : "offline",
      }),
      h(
        "div",
        { className: "body" },
        h("div", { className: "name" }, this.#titleView(c)),
        h("div", { className: "last", dir: "auto" }, lastLine(c)),
      ),
      unread > 0 ? h("span", { className: "unread", testid: "unread-count" }, unread) : null,
    );
  }

  #message(m: ClientMessage): HTMLElement {
    return h(
      "div",
      {
        className: `msg${m.mine ? " mine" : ""}${m.status === "failed" ? " failed" : ""}`,
        testid: "message",
        "data-client-msg-id": m.clientMsgId,
        "data-id": m.id ?? "",
        "data-status": m.status,
        "data-mine": String(m.mine),
      },
      this.#media.render(m),
      // Its own direction (Arabic, Hebrew…), isolated: bidi controls in it stay in it.
      m.content ? h("span", { className: "text", dir: "auto", testid: "message-text" }, m.content) : null,
      h("span", { className: "meta" }, timeOf(m.createdAt)),
      m.mine ? tick(m) : null,
      m.status === "failed" ? this.#failure(m) : null,
    );
  }

  /**
   * Why a message failed, said on the page. The user's own: Retry when it can succeed as it is
   * (`error.retryable`), Discard always. Someone else's (their send was refused after the relay
   * showed it here): not delivered, nothing to do — it is theirs to send again.
   */
  #failure(m: ClientMessage): HTMLElement {
    const reason = m.error?.message ?? "not sent";
    const act = (f: () => unknown) => () => {
      try {
        f();
      } catch (e) {
        this.error(e);
      }
    };
    return h(
      "div",
      { className: "failure", testid: "failure" },
      h("span", { className: "reason", testid: "failure-reason", dir: "auto" }, m.mine ? `Not sent: ${reason}` : `Not delivered: ${reason}`),
      m.mine && m.error?.retryable !== false
        ? h("button", { testid: "retry-button", onclick: act(() => this.#client.retry(m.clientMsgId)) }, "Retry")
        : null,
      m.mine
        ? h("button", { testid: "discard-button", onclick: act(() => this.#client.discard(m.clientMsgId)) }, "Discard")
        : null,
    );
  }

  #renderPane(): void {
    if (!this.#active) {
      mount(this.#pane, h("p", { className: "empty" }, "Pick a conversation, or start one with a username."));
      return;
    }
    this.#input.value = "";
    const composer = h(
      "form",
      {
        className: "composer",
        onsubmit: (event: Event) => {
          event.preventDefault();
          this.#send();
        },
      },
      attachButton(
        (conversationId, file, caption) => this.#uploads.send(conversationId, file, caption),
        () => this.#active,
        () => {
          const caption = this.#input.value;
          this.#input.value = "";
          return caption;
        },
        (e, caption) => {
          this.error(e);
          if (!this.#input.value) this.#input.value = caption; // not lost with the upload
        },
      ),
      this.#recorder.root,
      this.#input,
      h("button", { className: "primary", type: "submit", testid: "send-button" }, "Send"),
    );
    mount(this.#pane, this.#header, this.#messages, composer);
    mount(this.#messages);
    this.#renderHeader();
    this.#input.focus();
  }

  #renderHeader(): void {
    const c = this.#client.conversations.find((x) => x.id === this.#active);
    mount(this.#header, h("span", { className: "title", testid: "chat-title" }, c ? this.#titleView(c) : ""), this.#typing);
    this.#renderTyping();
  }

  #renderTyping(): void {
    const ids = (this.#active && this.#typingNames.get(this.#active)) || [];
    const c = this.#client.conversations.find((x) => x.id === this.#active);
    const names = ids.map((id) => c?.members.find((m) => m.user.id === id)?.user.displayName ?? "Someone");
    if (names.length === 0) return mount(this.#typing);
    mount(this.#typing, names.map((n, i) => [i ? ", " : "", h("bdi", {}, n)]), ` ${names.length === 1 ? "is" : "are"} typing…`);
  }

  #send(): void {
    const content = this.#input.value;
    if (!this.#active || !content.trim()) return;
    this.#input.value = "";
    try {
      this.#client.send({ conversationId: this.#active, content });
    } catch (e) {
      this.error(e);
    }
  }
}

/** The list's second line: the last message's text, its kind for a bare image or voice note. */
function lastLine(c: ConversationView): string {
  const last = c.lastMessage;
  if (!last) return "No messages yet";
  return last.content || (last.kind === "image" ? "Image" : last.kind === "voice" ? "Voice note" : "");
}

/** ✓ sent, ✓✓ delivered, ✓✓ in blue read; … while sending, ! when it failed. */
function tick(m: ClientMessage): HTMLElement {
  const [mark, label] = {
    sending: ["…", "sending"],
    sent: ["✓", "sent"],
    delivered: ["✓✓", "delivered"],
    read: ["✓✓", "read"],
    failed: ["!", m.error?.message ?? "failed"],
  }[m.status];
  return h(
    "span",
    { className: `tick ${m.status}`, testid: "message-status", "data-status": m.status, title: label },
    mark,
  );
}
