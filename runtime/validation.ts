import type { z } from 'zod';
import type { Issue } from './errors.js';

/** Turns zod's issues into `path: message` lines with dotted paths (`sources.cam1.port`). */
export function zodIssues(error: z.ZodError): Issue[] {
  return error.issues.map((issue) => {
    const path = issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.');
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')} (check the spelling; see docs/CONFIG.md)`;
    }
    return { path, message };
  });
}
