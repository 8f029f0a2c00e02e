// Reads one JSON case per line ({"expr", "tz", "after", "until"}, epoch ms) on stdin and
// prints, per line, the JSON list of cron-parser's fire times in (after, until].
import { createInterface } from 'node:readline';
import { CronExpressionParser } from 'cron-parser';

const MAX_FIRES = 20000;
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  const out = [];
  try {
    const it = CronExpressionParser.parse(c.expr, { currentDate: new Date(c.after), tz: c.tz });
    let last = -Infinity;
    for (;;) {
      const t = it.next().toDate().getTime();
      if (t > c.until) break;
      // Seen at Chatham's fall back: the same hour over and over.
      if (t <= last || out.length >= MAX_FIRES) throw new Error(`not increasing at ${t}`);
      last = t;
      if (t > c.after) out.push(t);
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e) }) + '\n');
  }
}
