// Request checks of the seeds' API: a body either becomes a message to store or an error
// naming the field (HTTP 400), before anything touches the database.

export const MAX_CONTENT_CHARS = 10_000;
export const MAX_CLIENT_MSG_ID_CHARS = 100;

// A positive 64-bit id, as a decimal string.
const ID = /^[1-9][0-9]{0,18}$/;
const MAX_ID = 2n ** 63n - 1n;

export class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function isId(value) {
  return typeof value === 'string' && ID.test(value) && BigInt(value) <= MAX_ID;
}

function invalid(message) {
  return new HttpError(400, 'invalid_request', message);
}

// Characters as a reader counts them (code points), not UTF-16 units.
function chars(text) {
  return text.length <= MAX_CONTENT_CHARS ? text.length : [...text].length;
}

// `{conversationId, recipientId?, content, clientMsgId}` → the message to store, or throws.
export function parseMessage(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalid('the body must be a JSON object');
  }
  const { conversationId, recipientId, content, clientMsgId } = body;
  if (!isId(conversationId)) {
    throw invalid('conversationId must be an id (a decimal string)');
  }
  if (recipientId !== undefined && recipientId !== null && !isId(recipientId)) {
    throw invalid('recipientId must be an id (a decimal string) when given');
  }
  if (typeof content !== 'string' || content.trim() === '') {
    throw invalid('content must be a non-empty string');
  }
  if (chars(content) > MAX_CONTENT_CHARS) {
    throw invalid(`content must be at most ${MAX_CONTENT_CHARS} characters`);
  }
  if (
    typeof clientMsgId !== 'string' ||
    clientMsgId === '' ||
    clientMsgId.length > MAX_CLIENT_MSG_ID_CHARS
  ) {
    throw invalid(`clientMsgId must be a string of 1 to ${MAX_CLIENT_MSG_ID_CHARS} characters`);
  }
  return {
    conversationId,
    recipientId: recipientId ?? null,
    content,
    clientMsgId,
  };
}
