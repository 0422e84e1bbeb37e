// Register or log in: one form, two buttons.

import { h, mount } from "./dom.js";

export interface Credentials {
  username: string;
  password: string;
}

export type Submit = (mode: "login" | "register", credentials: Credentials) => Promise<void>;

export function renderLogin(root: Element, submit: Submit, notice?: string): void {
  const username = h("input", {
    testid: "login-username",
    name: "username",
    placeholder: "username",
    autocomplete: "username",
    required: true,
  });
  const password = h("input", {
    testid: "login-password",
    name: "password",
    type: "password",
    placeholder: "password (8 characters or more)",
    autocomplete: "current-password",
    required: true,
  });
  const error = h("p", { testid: "auth-error", className: "error", role: "alert" }, notice ?? "");
  const buttons = [
    h("button", { testid: "login-button", className: "primary", type: "submit", value: "login" }, "Log in"),
    h("button", { testid: "register-button", type: "submit", value: "register" }, "Register"),
  ];
  const form = h(
    "form",
    {
      onsubmit: async (event: Event) => {
        event.preventDefault();
        const submitter = (event as SubmitEvent).submitter as HTMLButtonElement | null;
        const mode = submitter?.value === "register" ? "register" : "login";
        error.textContent = "";
        buttons.forEach((b) => (b.disabled = true));
        try {
          await submit(mode, { username: username.value.trim(), password: password.value });
        } catch (e) {
          error.textContent = describe(e);
        } finally {
          buttons.forEach((b) => (b.disabled = false));
        }
      },
    },
    username,
    password,
    h("div", { className: "row" }, buttons),
    error,
  );
  mount(root, h("div", { className: "login", testid: "login" }, h("h1", {}, "Parley"), form));
  username.focus();
}

/** A readable line for any error the SDK or the network throws. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: string }).code;
    if (code === "network_error" || error.name === "TypeError") {
      return `Cannot reach the server: ${error.message}. Is this page's origin allowed (CORS_ALLOWED_ORIGINS)?`;
    }
    return error.message;
  }
  return String(error);
}
