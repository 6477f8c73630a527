import { z } from 'zod';
import { CameraExpectations } from '../../quality/config.js';

const port = z.number().int().min(0).max(65535);

const Listen = z.strictObject({
  host: z.string().default('127.0.0.1').describe('Address to listen on; 0.0.0.0 for every interface'),
  port: port.describe('TCP port; 0 picks a free one'),
});

export const CameraFolderSource = z
  .strictObject({
    type: z.literal('camera-folder').describe('A watched folder'),
    path: z.string().min(1).describe('Folder the camera drops image files into (FTP/SMB target)'),
    extensions: z
      .array(z.string().regex(/^\.[a-z0-9]+$/, 'a lower-case extension with its dot, like .jpg'))
      .default(['.jpg', '.jpeg', '.png'])
      .describe('File extensions taken as frames; other files are ignored'),
    stableMs: z
      .number()
      .int()
      .min(0)
      .default(150)
      .describe('A file counts as complete once its size has not changed for this long'),
    afterRead: z
      .enum(['delete', 'keep'])
      .default('delete')
      .describe('What to do with a frame file once it has been read'),
    maxFileBytes: z
      .number()
      .int()
      .positive()
      .default(32 * 1024 * 1024)
      .describe('Larger files are refused'),
    expectations: CameraExpectations.optional().describe(
      'Data expectations on the frames of this camera: out-of-spec frames are counted, alerted on and treated by each pipeline’s dataQuality policy (docs/DATA-QUALITY.md)',
    ),
  })
  .describe('Frames dropped as files into a watched folder');

export const CameraHttpSource = z
  .strictObject({
    type: z.literal('camera-http').describe('An HTTP ingest endpoint'),
    listen: Listen.default({ host: '127.0.0.1', port: 8471 }).describe('Where the ingest endpoint listens'),
    path: z
      .string()
      .regex(/^\/[A-Za-z0-9/_-]*$/)
      .default('/frames')
      .describe('POST JPEG or PNG bytes here (Content-Type image/jpeg or image/png)'),
    maxBodyBytes: z
      .number()
      .int()
      .positive()
      .default(32 * 1024 * 1024)
      .describe('Larger bodies get 413'),
    expectations: CameraExpectations.optional().describe(
      'Data expectations on the frames of this camera: out-of-spec frames are counted, alerted on and treated by each pipeline’s dataQuality policy (docs/DATA-QUALITY.md)',
    ),
  })
  .describe('Frames POSTed over HTTP');
