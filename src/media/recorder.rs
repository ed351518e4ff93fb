//! Call recordings (`RECORD=1`): each call as a stereo 16-bit WAV in `$DATA_DIR/recordings/`,
//! caller on the left, bot on the right, placed in time on one sample clock.
//!
//! Sessions never touch the disk and never wait for it (see `docs/ARCHITECTURE.md`): they copy audio
//! into buffers from a small per-call pool and hand them to one writer thread through a bounded,
//! preallocated queue, always with `try_send`. With the queue full (a slow or hung disk: NFS, a
//! failing SD card) audio is dropped from the recording (counted), never from the call, a call
//! that starts is not recorded (counted), and a closing call leaves its close on a side list the
//! writer reads between messages. Nothing is allocated per frame. A disk error ends that one recording,
//! logged once with its call id, and no more than once a second overall. A WAV left unfinished
//! by a crash has its header repaired at the next start.

use crate::calls::CallLogId;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Audio messages waiting for the writer, across all calls.
pub const QUEUE_FRAMES: usize = 8192;
/// How often the writer looks at closes left on the side list when no message comes.
const LATE_CLOSE_POLL: Duration = Duration::from_millis(500);
/// Disk errors are logged at most this often, across all recordings.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(1);
/// Buffers each call's session can have in flight.
const POOL_BUFFERS: usize = 32;
/// The writer keeps this much of both tracks open for late audio before writing it out; a crash
/// loses at most this much (and an 8 KiB write buffer) of a call's recording.
const WINDOW_SECONDS: u64 = 2;
const WAV_HEADER: u64 = 44;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Caller,
    Bot,
}

/// A recording's key in the writer: a number, so that a message costs no allocation.
type RecordingKey = u64;

enum Message {
    Open {
        id: RecordingKey,
        call: CallLogId,
        path: PathBuf,
        sample_rate: u32,
        returns: SyncSender<Vec<i16>>,
    },
    Audio {
        id: RecordingKey,
        track: Track,
        /// Sample position from the start of the stream.
        at: u64,
        samples: Vec<i16>,
    },
    Close {
        id: RecordingKey,
    },
}

/// Closes that found the queue full, for the writer to take between messages.
type LateCloses = Arc<Mutex<Vec<RecordingKey>>>;

/// The writer thread's handle. Cloning shares it.
#[derive(Clone)]
pub struct Recorder {
    dir: PathBuf,
    queue: SyncSender<Message>,
    late_closes: LateCloses,
    metrics: Arc<Metrics>,
    keys: Arc<std::sync::atomic::AtomicU64>,
}

impl Recorder {
    /// Creates `dir`, repairs WAVs a crash left unfinished, starts the writer.
    pub fn start(dir: &Path, metrics: Arc<Metrics>) -> io::Result<(Recorder, usize)> {
        std::fs::create_dir_all(dir)?;
        let repaired = repair_dir(dir)?;
        let (queue, incoming) = sync_channel(QUEUE_FRAMES);
        let late_closes = LateCloses::default();
        {
            let (late_closes, metrics) = (late_closes.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("recorder".into())
                .spawn(move || writer(incoming, &late_closes, &metrics))?;
        }
        Ok((
            Recorder {
                dir: dir.to_owned(),
                queue,
                late_closes,
                metrics,
                keys: Default::default(),
            },
            repaired,
        ))
    }

    /// Where a call's recording is written.
    pub fn path_for(&self, id: &CallLogId) -> PathBuf {
        self.dir.join(format!("{id}.wav"))
    }

    /// Starts a call's recording: the handle its session pushes audio through. Allocates the
    /// call's buffers now, once. Never waits: with the writer's queue full, the call is not
    /// recorded (counted in `recordings_skipped`).
    pub fn open(&self, id: &CallLogId, sample_rate: u32) -> CallRecording {
        let (returns, returned) = sync_channel(POOL_BUFFERS);
        let key = self.keys.fetch_add(1, Ordering::Relaxed);
        let opened = self
            .queue
            .try_send(Message::Open {
                id: key,
                call: id.clone(),
                path: self.path_for(id),
                sample_rate,
                returns,
            })
            .is_ok();
        if !opened {
            self.metrics
                .recordings_skipped
                .fetch_add(1, Ordering::Relaxed);
            crate::warn!(
                "recording.skipped",
                callLogId = id,
                detail = "the recording writer is too far behind (is the disk hung?); this call is not recorded"
            );
        }
        let frame = sample_rate as usize / 5;
        let pool = if opened { POOL_BUFFERS } else { 0 };
        CallRecording {
            id: key,
            queue: self.queue.clone(),
            late_closes: self.late_closes.clone(),
            free: (0..pool).map(|_| Vec::with_capacity(frame)).collect(),
            returned,
            metrics: self.metrics.clone(),
            open: opened,
        }
    }
}

/// One call's side of the recorder, owned by its session.
pub struct CallRecording {
    id: RecordingKey,
    queue: SyncSender<Message>,
    late_closes: LateCloses,
    free: Vec<Vec<i16>>,
    returned: Receiver<Vec<i16>>,
    metrics: Arc<Metrics>,
    open: bool,
}

impl CallRecording {
    /// Queues `samples` of `track` at sample position `at`; drops them (counted) when the writer
    /// is behind. No allocation once the pool's buffers have grown to the call's frame size.
    pub fn push(&mut self, track: Track, at: u64, samples: &[i16]) {
        if !self.open || samples.is_empty() {
            return;
        }
        while let Ok(buffer) = self.returned.try_recv() {
            self.free.push(buffer);
        }
        let Some(mut buffer) = self.free.pop() else {
            self.metrics
                .recording_frames_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        buffer.clear();
        buffer.extend_from_slice(samples);
        let message = Message::Audio {
            id: self.id,
            track,
            at,
            samples: buffer,
        };
        if let Err(TrySendError::Full(Message::Audio { samples, .. }))
        | Err(TrySendError::Disconnected(Message::Audio { samples, .. })) =
            self.queue.try_send(message)
        {
            // The writer is behind or gone: the buffer comes back, the audio is not recorded.
            self.free.push(samples);
            self.metrics
                .recording_frames_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for CallRecording {
    fn drop(&mut self) {
        // A closing call never waits for the disk: with the queue full, its close waits on the
        // side list instead (the recording then loses what is still queued behind it).
        if self.open {
            if let Err(TrySendError::Full(_)) = self.queue.try_send(Message::Close { id: self.id })
            {
                self.late_closes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(self.id);
            }
        }
    }
}

/// Both tracks of a recording from sample `base` on, not yet written out: the WAV writer's
/// work (placing audio on one sample clock, interleaving it) without the file, so that
/// `benches/recording.rs` can measure it. Its buffers are reused, not allocated per write.
#[derive(Default)]
pub struct StereoWindow {
    base: u64,
    left: Vec<i16>,
    right: Vec<i16>,
    bytes: Vec<u8>,
}

impl StereoWindow {
    /// Puts `samples` of `track` at sample position `at`; audio before what was already written
    /// out is dropped.
    pub fn place(&mut self, track: Track, at: u64, samples: &[i16]) {
        let skip = self.base.saturating_sub(at) as usize;
        if skip >= samples.len() {
            return;
        }
        let start = (at + skip as u64 - self.base) as usize;
        let end = start + samples.len() - skip;
        let lane = match track {
            Track::Caller => &mut self.left,
            Track::Bot => &mut self.right,
        };
        if lane.len() < end {
            lane.resize(end, 0);
        }
        lane[start..end].copy_from_slice(&samples[skip..]);
    }

    /// The sample position after the last sample placed on either track.
    pub fn end(&self) -> u64 {
        self.base + self.left.len().max(self.right.len()) as u64
    }

    /// The sample position after the last caller sample placed.
    pub fn caller_end(&self) -> u64 {
        self.base + self.left.len() as u64
    }

    /// Writes everything before `until` (a sample position) to `out`, interleaved as 16-bit
    /// little-endian stereo frames; returns the frames written.
    pub fn write_until(&mut self, until: u64, out: &mut impl Write) -> io::Result<u64> {
        let n = until.saturating_sub(self.base) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.left.resize(self.left.len().max(n), 0);
        self.right.resize(self.right.len().max(n), 0);
        self.bytes.clear();
        self.bytes.reserve(n * 4);
        for (l, r) in self.left[..n].iter().zip(&self.right[..n]) {
            self.bytes.extend_from_slice(&l.to_le_bytes());
            self.bytes.extend_from_slice(&r.to_le_bytes());
        }
        out.write_all(&self.bytes)?;
        self.left.drain(..n);
        self.right.drain(..n);
        self.base += n as u64;
        Ok(n as u64)
    }
}

/// A WAV being written.
struct Open {
    call: CallLogId,
    file: BufWriter<File>,
    sample_rate: u32,
    window: StereoWindow,
    returns: SyncSender<Vec<i16>>,
    frames_written: u64,
}

impl Open {
    fn new(
        call: CallLogId,
        file: BufWriter<File>,
        sample_rate: u32,
        returns: SyncSender<Vec<i16>>,
    ) -> Open {
        Open {
            call,
            file,
            sample_rate,
            window: StereoWindow::default(),
            returns,
            frames_written: 0,
        }
    }

    /// Places a buffer of audio, returns the buffer to its call, writes what is settled.
    fn place(&mut self, track: Track, at: u64, samples: Vec<i16>) -> io::Result<()> {
        self.window.place(track, at, &samples);
        let _ = self.returns.try_send(samples);
        // The caller's clock drives the file: keep a window open for late audio.
        let window = WINDOW_SECONDS * self.sample_rate as u64;
        let until = self.window.caller_end().saturating_sub(window);
        self.write_until(until)
    }

    fn write_until(&mut self, until: u64) -> io::Result<()> {
        self.frames_written += self.window.write_until(until, &mut self.file)?;
        Ok(())
    }

    /// Everything out, header sizes right.
    fn finish(mut self) -> io::Result<()> {
        self.write_until(self.window.end())?;
        self.file.flush()?;
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        write_sizes(&mut file, self.frames_written * 4)?;
        file.sync_data()
    }
}

fn writer(incoming: Receiver<Message>, late_closes: &Mutex<Vec<RecordingKey>>, metrics: &Metrics) {
    let mut open: HashMap<RecordingKey, Open> = HashMap::new();
    let mut errors = ErrorLog::default();
    // Late closes whose open is still queued: that recording is not started at all.
    let mut closed_before_open = std::collections::HashSet::new();
    loop {
        let late = std::mem::take(&mut *late_closes.lock().unwrap_or_else(|e| e.into_inner()));
        for id in late {
            match open.remove(&id) {
                Some(wav) => {
                    let call = wav.call.clone();
                    if let Err(e) = wav.finish() {
                        errors.failed(&call, "close", e, metrics);
                    }
                }
                None => {
                    closed_before_open.insert(id);
                }
            }
        }
        let message = match incoming.recv_timeout(LATE_CLOSE_POLL) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let (id, result) = match message {
            Message::Open {
                id,
                call,
                path,
                sample_rate,
                returns,
            } => {
                if closed_before_open.remove(&id) {
                    continue;
                }
                match create(&path, sample_rate) {
                    Ok(file) => {
                        open.insert(id, Open::new(call, file, sample_rate, returns));
                    }
                    Err(e) => errors.failed(&call, "open", e, metrics),
                }
                continue;
            }
            Message::Audio {
                id,
                track,
                at,
                samples,
            } => {
                let result = match open.get_mut(&id) {
                    Some(wav) => wav.place(track, at, samples),
                    None => Ok(()),
                };
                (id, result)
            }
            Message::Close { id } => match open.remove(&id) {
                Some(wav) => {
                    let call = wav.call.clone();
                    if let Err(e) = wav.finish() {
                        errors.failed(&call, "close", e, metrics);
                    }
                    continue;
                }
                None => continue,
            },
        };
        if let Err(e) = result {
            // This recording is given up; the others and every call go on.
            if let Some(wav) = open.remove(&id) {
                errors.failed(&wav.call, "write", e, metrics);
            }
        }
    }
}

/// Disk errors of the recordings: each recording's logged once, with its call id, and no more
/// than one line a second overall (the lines left out are counted in the next).
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn failed(&mut self, call: &CallLogId, during: &str, error: io::Error, metrics: &Metrics) {
        metrics.recordings_failed.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < ERROR_LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        self.last = Some(now);
        crate::error!(
            "recording.failed",
            callLogId = call,
            during = during,
            error = error,
            suppressedSinceLast = std::mem::take(&mut self.suppressed),
            detail = "this call's recording is given up; the call goes on"
        );
    }
}

/// Creates the WAV with its header; a recordings directory deleted while running is made again.
fn create(path: &Path, sample_rate: u32) -> io::Result<BufWriter<File>> {
    let file = match File::create(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            File::create(path)?
        }
        other => other?,
    };
    let mut file = BufWriter::new(file);
    let mut head = Vec::new();
    crate::media::audio::write_wav(&mut head, sample_rate, 2, &[])?;
    file.write_all(&head)?;
    Ok(file)
}

/// Sets the RIFF and data sizes of a 44-byte-header WAV for `data_len` bytes of audio.
fn write_sizes(file: &mut File, data_len: u64) -> io::Result<()> {
    let data_len = u32::try_from(data_len).unwrap_or(u32::MAX - 36);
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&(36 + data_len).to_le_bytes())?;
    file.seek(SeekFrom::Start(40))?;
    file.write_all(&data_len.to_le_bytes())?;
    Ok(())
}

/// Fixes the header of every WAV in `dir` whose sizes do not match its length (left by a
/// crash), trimming a partial last frame. Returns how many were repaired.
pub fn repair_dir(dir: &Path) -> io::Result<usize> {
    let mut repaired = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wav") && repair(&path)? {
            repaired += 1;
        }
    }
    Ok(repaired)
}

fn repair(path: &Path) -> io::Result<bool> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; 44];
    if len < WAV_HEADER || file.read_exact(&mut head).is_err() || &head[..4] != b"RIFF" {
        return Ok(false);
    }
    let block = u16::from_le_bytes([head[32], head[33]]).max(1) as u64;
    let data = (len - WAV_HEADER) / block * block;
    let riff = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default()) as u64;
    let stated = u32::from_le_bytes(head[40..44].try_into().unwrap_or_default()) as u64;
    if stated == data && riff == data + 36 && len == WAV_HEADER + data {
        return Ok(false);
    }
    file.set_len(WAV_HEADER + data)?;
    write_sizes(&mut file, data)?;
    file.sync_data()?;
    Ok(true)
}
