// The seeds' storage in PostgreSQL through a `pg` Pool: the database and its schema made at
// start, and one statement per message that checks membership, takes the conversation's next
// seq and inserts, atomically.

import { readFile } from 'node:fs/promises';
import pg from 'pg';

const SCHEMA = new URL('./schema.sql', import.meta.url);

// One round trip: the UPDATE takes the conversation's next seq only if the sender is a member
// (no row otherwise), the INSERT stores the message with it. A second send of the same
// (sender, clientMsgId) violates the unique key, which rolls the whole statement back, seq
// included: seqs stay gap-free.
const STORE = `
WITH next AS (
    UPDATE conversations c SET last_seq = c.last_seq + 1
    WHERE c.id = $1 AND EXISTS (
        SELECT 1 FROM conversation_members m WHERE m.conversation_id = $1 AND m.user_id = $2
    )
    RETURNING c.last_seq
)
INSERT INTO messages (conversation_id, sender_id, seq, content, client_msg_id)
SELECT $1, $2, next.last_seq, $3, $4 FROM next
RETURNING id, conversation_id, sender_id, seq, content, client_msg_id, created_at`;

const STORED = `
SELECT id, conversation_id, sender_id, seq, content, client_msg_id, created_at
FROM messages WHERE sender_id = $1 AND client_msg_id = $2`;

const UNIQUE_VIOLATION = '23505';
const INVALID_CATALOG_NAME = '3D000';

// Create the database named in `url` when it does not exist (connecting to `postgres`).
async function ensureDatabase(url) {
  const probe = new pg.Client({ connectionString: url });
  try {
    await probe.connect();
    return;
  } catch (error) {
    if (error.code !== INVALID_CATALOG_NAME) {
      throw new Error(`connecting to PostgreSQL at ${redact(url)}: ${error.message}`);
    }
  } finally {
    await probe.end().catch(() => {});
  }
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!/^[A-Za-z0-9_]+$/.test(name)) {
    throw new Error(`database name ${JSON.stringify(name)}: letters, digits and _ only`);
  }
  target.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: target.toString() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } catch (error) {
    // Another process created it in between.
    if (error.code !== '42P04') throw error;
  } finally {
    await admin.end();
  }
}

function redact(url) {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

export class Store {
  constructor(pool) {
    this.pool = pool;
  }

  // Connect (creating the database if missing) and apply the schema.
  static async open(url, poolSize) {
    await ensureDatabase(url);
    const pool = new pg.Pool({ connectionString: url, max: poolSize });
    pool.on('error', (error) => console.error(`seeds-api: idle connection lost: ${error.message}`));
    await pool.query(await readFile(SCHEMA, 'utf8'));
    return new Store(pool);
  }

  // Store `message` from `senderId`: `{outcome: 'created' | 'stored_before', row}`, or
  // `{outcome: 'not_member'}` (the conversation does not exist or the sender is not in it), or
  // `{outcome: 'conflict'}` (the sender used this clientMsgId in another conversation).
  async storeMessage(senderId, message) {
    const { conversationId, content, clientMsgId } = message;
    try {
      const result = await this.pool.query({
        name: 'store_message',
        text: STORE,
        values: [conversationId, senderId, content, clientMsgId],
      });
      return result.rows.length === 0
        ? { outcome: 'not_member' }
        : { outcome: 'created', row: result.rows[0] };
    } catch (error) {
      if (error.code !== UNIQUE_VIOLATION) throw error;
    }
    const stored = await this.pool.query({
      name: 'stored_message',
      text: STORED,
      values: [senderId, clientMsgId],
    });
    const row = stored.rows[0];
    if (!row) return { outcome: 'not_member' };
    // The first copy went to another conversation: not the same send.
    if (row.conversation_id !== conversationId) return { outcome: 'conflict' };
    return { outcome: 'stored_before', row };
  }

  async close() {
    await this.pool.end();
  }
}
