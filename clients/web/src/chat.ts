// The logged-in screen: the conversation list (unread counts, presence dots), a form to start a
// direct conversation, and the chat pane (optimistic messages, ticks, typing, composer).

import type { ClientMessage, ConversationView, LatencySample, ParleyClient, User } from "@parley/client";
import { h, mount, timeOf } from "./dom.js";
import { describe } from "./login.js";

export class ChatView {
  readonly #client: ParleyClient;
  readonly #me: User;
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
  /** The highest seq this page asked to mark delivered, per conversation. */
  readonly #deliveredAsked = new Map<string, number>();
  readonly #typingNames = new Map<string, readonly string[]>();

  constructor(client: ParleyClient, me: User, logout: () => void) {
    this.#client = client;
    this.#me = me;
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
        h("strong", { testid: "me" }, me.displayName),
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
      if (this.#active && this.#input.value) client.typing(this.#active);
    });
    this.root = h("div", { className: "shell" }, side, h("main", { className: "main" }, this.#pane));
    this.#renderPane();
  }

  readonly root: HTMLElement;

  /** The conversation list changed (the SDK's view: new ones, last messages, unread counts). */
  conversations(list: readonly ConversationView[]): void {
    mount(this.#list, list.map((c) => this.#item(c)));
    if (this.#active) this.#renderHeader();
  }

  /** A catch-up sync finished: everything listed has reached this device. */
  caughtUp(): void {
    for (const c of this.#client.conversations) this.#markDelivered(c);
  }

  /**
   * Mark a conversation's newest message delivered. The SDK marks what arrives live or through
   * sync, but not a message it first learnt as the list's `lastMessage` (at connect), so the app
   * covers that case once caught up (before, the SDK's list may not hold the message yet and
   * would take the receipt for a read).
   */
  #markDelivered(c: ConversationView): void {
    const last = c.lastMessage;
    if (!last || last.senderId === this.#me.id) return;
    const mine = c.members.find((m) => m.user.id === this.#me.id);
    const asked = Math.max(mine?.deliveredUpToSeq ?? 0, this.#deliveredAsked.get(c.id) ?? 0);
    if (asked >= last.seq) return;
    this.#deliveredAsked.set(c.id, last.seq);
    this.#client.markDelivered(c.id, last.seq).catch((e) => this.error(e));
  }

  messages(conversationId: string, list: readonly ClientMessage[]): void {
    if (conversationId !== this.#active) return;
    const atBottom =
      this.#messages.scrollHeight - this.#messages.scrollTop - this.#messages.clientHeight < 40;
    mount(this.#messages, list.map((m) => this.#message(m)));
    if (atBottom || list.at(-1)?.mine) this.#messages.scrollTop = this.#messages.scrollHeight;
    if (document.visibilityState === "visible" && list.some((m) => !m.mine && m.seq !== null)) {
      this.#client.markRead(conversationId).catch((e) => this.error(e));
    }
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
    this.#active = conversationId;
    this.#renderPane();
    this.conversations(this.#client.conversations);
    try {
      await this.#client.loadHistory(conversationId);
    } catch (e) {
      this.error(e);
    }
    this.messages(conversationId, this.#client.messages(conversationId));
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

  #other(c: ConversationView): string | null {
    if (c.kind !== "direct") return null;
    return c.members.find((m) => m.user.id !== this.#me.id)?.user.id ?? null;
  }

  #item(c: ConversationView): HTMLElement {
    const other = this.#other(c);
    const online = other ? (this.#client.presence(other)?.online ?? false) : false;
    const unread = c.id === this.#active ? 0 : c.unreadCount;
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
        h("div", { className: "name" }, this.#title(c)),
        h("div", { className: "last" }, c.lastMessage?.content ?? "No messages yet"),
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
      m.content,
      h("span", { className: "meta" }, timeOf(m.createdAt)),
      m.mine ? tick(m) : null,
      m.status === "failed"
        ? h(
            "button",
            { testid: "retry-button", onclick: () => this.#client.retry(m.clientMsgId) },
            "Retry",
          )
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
    mount(this.#header, h("span", { testid: "chat-title" }, c ? this.#title(c) : ""), this.#typing);
    this.#renderTyping();
  }

  #renderTyping(): void {
    const ids = (this.#active && this.#typingNames.get(this.#active)) || [];
    const c = this.#client.conversations.find((x) => x.id === this.#active);
    const names = ids.map((id) => c?.members.find((m) => m.user.id === id)?.user.displayName ?? "Someone");
    this.#typing.textContent =
      names.length === 0 ? "" : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
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
