// The connection banner: hidden while connected; otherwise what the monitor is doing, and a
// button to try again now.

import type { ConnectionState } from "@parley/client";
import { h, mount } from "./dom.js";

export function renderBanner(el: HTMLElement, state: ConnectionState, reconnect: () => void): void {
  const text = describeState(state);
  el.hidden = text === null;
  el.className = `banner ${state.status === "disconnected" ? "failed" : state.status}`;
  el.dataset.state = state.status;
  if (text === null) {
    mount(el);
    return;
  }
  const button =
    state.status === "connecting" || state.status === "idle"
      ? null
      : h("button", { testid: "banner-reconnect", onclick: () => reconnect() }, "Reconnect now");
  mount(el, h("span", { testid: "banner-text" }, text), button);
}

function describeState(state: ConnectionState): string | null {
  switch (state.status) {
    case "connected":
    case "idle":
      return null;
    case "connecting":
      return "Connecting…";
    case "reconnecting":
      return `Reconnecting… (attempt ${state.attempt})`;
    case "offline":
      return "You are offline: messages will be sent when the network is back.";
    case "disconnected":
      switch (state.reason) {
        case "attempts_exhausted":
          return "Disconnected: the server cannot be reached.";
        case "unauthorized":
          return "Disconnected: the server refused this session. Log in again.";
        case "session_revoked":
          return "Your session ended. Log in again.";
        default:
          return "Disconnected.";
      }
  }
}
