// Voice notes recorded in the page: the microphone through MediaRecorder (Ogg/Opus or WebM/Opus,
// whichever the browser records; Safari's MP4/AAC too), then uploaded and sent as `kind: voice`.
// One recorder per chat view: switching conversation or logging out cancels a recording, and the
// microphone is released whenever a recording ends.

import { h } from "./dom.js";

/** The server's default longest voice note (attachments.voice_max_ms): recording stops there. */
const MAX_MS = 5 * 60_000;
/** Containers the server reads a duration from, in the order this page prefers them. */
const TYPES = ["audio/ogg;codecs=opus", "audio/webm;codecs=opus", "audio/mp4"];

type State = "idle" | "starting" | "recording" | "uploading";

export class VoiceRecorder {
  readonly root: HTMLElement;
  readonly #button = h("button", { type: "button", testid: "record-button", "data-state": "idle" }, "Record");
  readonly #cancel = h("button", { type: "button", testid: "record-cancel", hidden: true }, "Cancel");
  #state: State = "idle";
  #recorder: MediaRecorder | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Bumped by every start and cancel: a stale recording's stop event sends nothing. */
  #generation = 0;

  /** `deliver` uploads and sends the recording to the conversation it was recorded for. */
  constructor(
    private readonly conversationId: () => string | null,
    private readonly deliver: (conversationId: string, recording: Blob) => Promise<void>,
    private readonly failed: (error: unknown) => void,
  ) {
    const why = unsupported();
    if (why) {
      this.#button.disabled = true;
      this.#button.title = why;
    } else {
      this.#button.title = "Record a voice note";
    }
    this.#button.addEventListener("click", () => void this.#toggle());
    this.#cancel.addEventListener("click", () => this.cancel());
    this.root = h("span", { className: "recorder" }, this.#button, this.#cancel);
  }

  /** Drop a recording in progress (nothing is sent) and release the microphone. */
  cancel(): void {
    this.#generation++;
    const recorder = this.#recorder;
    if (recorder && recorder.state !== "inactive") recorder.stop();
    this.#release();
    if (this.#state !== "uploading") this.#show("idle");
  }

  async #toggle(): Promise<void> {
    if (this.#state === "recording") this.#recorder?.stop();
    else if (this.#state === "idle") await this.#start();
  }

  async #start(): Promise<void> {
    const conversationId = this.conversationId();
    if (!conversationId) return;
    const generation = ++this.#generation;
    this.#show("starting");
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      this.#show("idle");
      return this.failed(new Error(microphoneError(e)));
    }
    if (generation !== this.#generation) return stream.getTracks().forEach((t) => t.stop());
    const mimeType = TYPES.find((t) => MediaRecorder.isTypeSupported(t));
    const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
    const chunks: Blob[] = [];
    let bytes = 0;
    let startedAt = 0;
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data.size === 0) return;
      chunks.push(event.data);
      bytes += event.data.size;
      this.#button.dataset.bytes = String(bytes);
    });
    recorder.addEventListener("start", () => {
      startedAt = performance.now();
      this.#show("recording");
      this.#timer = setInterval(() => {
        const ms = performance.now() - startedAt;
        this.#button.dataset.elapsedMs = String(Math.round(ms));
        this.#button.textContent = `Stop ${duration(ms)}`;
        if (ms >= MAX_MS && recorder.state === "recording") recorder.stop();
      }, 250);
    });
    recorder.addEventListener("stop", () => {
      stream.getTracks().forEach((t) => t.stop());
      if (this.#recorder === recorder) this.#release();
      if (generation !== this.#generation) return; // cancelled
      const recording = new Blob(chunks, { type: recorder.mimeType });
      if (recording.size === 0) {
        this.#show("idle");
        return this.failed(new Error("Nothing was recorded: check the microphone"));
      }
      this.#show("uploading");
      this.deliver(conversationId, recording)
        .catch((e) => this.failed(e))
        .finally(() => this.#show("idle"));
    });
    recorder.addEventListener("error", () => {
      this.cancel();
      this.failed(new Error("The recording failed"));
    });
    this.#recorder = recorder;
    this.#button.dataset.bytes = "0";
    this.#button.dataset.elapsedMs = "0";
    recorder.start(250); // a chunk every 250 ms: the page sees the recording grow
  }

  #release(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#recorder?.stream.getTracks().forEach((t) => t.stop());
    this.#recorder = null;
  }

  #show(state: State): void {
    this.#state = state;
    this.#button.dataset.state = state;
    this.#button.disabled = state === "starting" || state === "uploading";
    this.#cancel.hidden = state !== "recording";
    this.#button.classList.toggle("recording", state === "recording");
    this.#button.textContent = { idle: "Record", starting: "Record", recording: "Stop 0:00", uploading: "Sending…" }[state];
  }
}

/** Why this page cannot record, or `null` when it can. */
function unsupported(): string | null {
  if (typeof MediaRecorder === "undefined") return "This browser cannot record audio (no MediaRecorder)";
  if (!navigator.mediaDevices?.getUserMedia) {
    return "Recording needs the microphone, which browsers give to https:// or localhost pages only";
  }
  return null;
}

function microphoneError(e: unknown): string {
  const name = (e as { name?: string }).name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "The microphone was refused: allow it for this site to record a voice note";
  }
  if (name === "NotFoundError") return "No microphone found";
  if (name === "NotReadableError") return "The microphone is in use by another application";
  return `Cannot use the microphone: ${(e as { message?: string }).message ?? String(e)}`;
}

/** m:ss of a length in milliseconds. */
export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
