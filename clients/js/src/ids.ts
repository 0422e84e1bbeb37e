// Client message ids: random, so two devices of one user never pick the same one.

/** A new `clientMsgId`: `c-` and 32 random hex digits (visible ASCII, as the server requires). */
export function newClientMsgId(): string {
  const crypto = globalThis.crypto;
  if (crypto && typeof crypto.randomUUID === "function") {
    return `c-${crypto.randomUUID().replaceAll("-", "")}`;
  }
  const bytes = new Uint8Array(16);
  if (crypto && typeof crypto.getRandomValues === "function") {
    crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  return `c-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
