import type { SourceConfig } from '../config/schema.js';
import type { Issue } from '../errors.js';

/** Tag names listed in a warning at most. */
const SHOWN_TAGS = 20;

/**
 * The tags a source can deliver, when its config says so: an MQTT JSON source's mapped tags, an
 * OPC-UA source's items, a serial line's columns, key map or regex groups, a Modbus source's
 * registers. Undefined where the device names them at run time (Sparkplug metrics, MQTT JSON with
 * allNumericFields, key=value lines without a key map) or for cameras.
 */
export function declaredTags(sc: SourceConfig): Set<string> | undefined {
  switch (sc.type) {
    case 'mqtt-json': {
      if (sc.subscriptions.some((s) => s.allNumericFields)) return undefined;
      return new Set(sc.subscriptions.flatMap((s) => Object.keys(s.tags ?? {})));
    }
    case 'opcua':
      return new Set(sc.items.map((i) => i.tag));
    case 'modbus-rtu':
      return new Set(sc.registers.map((r) => r.tag));
    case 'serial-line': {
      const f = sc.format;
      if (f.type === 'csv')
        return new Set(f.columns.filter((c) => c !== 'asset' && c !== 'time' && c !== '-'));
      if (f.type === 'kv') return f.tags ? new Set(Object.values(f.tags)) : undefined;
      // Named groups are tags under their own name, or the name the group map gives them.
      const groups = [...f.pattern.matchAll(/\(\?<([A-Za-z_$][\w$]*)>/g)].map((m) => m[1]!);
      return new Set(groups.filter((g) => g !== 'asset' && g !== 'time').map((g) => f.tags?.[g] ?? g));
    }
    default:
      return undefined;
  }
}

/**
 * Expectations on tags the source never delivers, as `path: message` warnings for `vigil config
 * check` and the daemon's start-up log: a misspelt tag name checks nothing, silently. Only for
 * sources whose tags are known from the config (declaredTags); a warning, not a problem, since
 * the config still runs.
 */
export function expectationTagWarnings(sources: Readonly<Record<string, SourceConfig>>): Issue[] {
  const found: Issue[] = [];
  for (const [name, sc] of Object.entries(sources)) {
    const e = 'expectations' in sc ? sc.expectations : undefined;
    if (!e || !('tags' in e)) continue;
    const expected = Object.keys(e.tags);
    if (expected.length === 0) continue;
    const known = declaredTags(sc);
    if (!known) continue;
    const list = [...known].sort();
    const shown =
      list.length > SHOWN_TAGS
        ? `${list.slice(0, SHOWN_TAGS).join(', ')}, … ${list.length - SHOWN_TAGS} more`
        : list.join(', ');
    for (const tag of expected) {
      if (known.has(tag)) continue;
      found.push({
        path: `sources.${name}.expectations.tags.${tag}`,
        message: `source ${name} delivers no tag named '${tag}' (its tags: ${shown || 'none'}), so this expectation checks nothing; use the tag name the source gives, or map the tag`,
      });
    }
  }
  return found;
}
