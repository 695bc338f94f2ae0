//! The sound devices (cargo feature `devices`, through cpal): the default microphone
//! as a [`Source`] and the default speaker as a [`Sink`].
//!
//! A device's stream runs its callback on the audio system's thread; between it and
//! the call's 20 ms ticks sits a queue of 48 kHz mono samples bounded to
//! [`QUEUE_MS`], so a stalled side costs audio, not memory or latency. Each stream is
//! owned by a thread of its own (cpal streams need not be `Send`), which drops it
//! when the source or sink is dropped or finished.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use crate::audio::{AudioError, FRAME_SAMPLES, Frame, SAMPLE_RATE, Sink, Source};
use crate::resample::Resampler;

/// Most audio held between a device and a call.
pub const QUEUE_MS: usize = 200;

const QUEUE_SAMPLES: usize = SAMPLE_RATE as usize / 1000 * QUEUE_MS;

/// Why a sound device could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The system has no default device of that kind.
    #[error("no default {0} device")]
    NoDevice(&'static str),
    /// The device refused (busy, unsupported format, gone).
    #[error("{0} device: {1}")]
    Device(&'static str, String),
}

type Queue = Arc<Mutex<VecDeque<i16>>>;

/// Keeps a device's stream alive on its own thread until dropped.
struct StreamThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Builds and plays a stream on a new thread, which keeps it until told to stop.
fn run_stream(
    what: &'static str,
    build: impl FnOnce() -> Result<cpal::Stream, DeviceError> + Send + 'static,
) -> Result<StreamThread, DeviceError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("kith-{what}"))
        .spawn(move || {
            let started = build().and_then(|stream| {
                stream.play().map_err(|e| DeviceError::Device(what, e.to_string()))?;
                Ok(stream)
            });
            match started {
                Ok(stream) => {
                    let _ = ready_tx.send(Ok(()));
                    // Until the owner drops its sender.
                    let _ = stop_rx.recv();
                    drop(stream);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| DeviceError::Device(what, e.to_string()))?;
    ready_rx.recv().map_err(|_| DeviceError::Device(what, "its thread ended".into()))??;
    Ok(StreamThread { stop: Some(stop_tx), thread: Some(thread) })
}

fn push_bounded(queue: &Queue, samples: impl IntoIterator<Item = i16>) {
    if let Ok(mut q) = queue.lock() {
        q.extend(samples);
        let excess = q.len().saturating_sub(QUEUE_SAMPLES);
        q.drain(..excess);
    }
}

fn to_i16(s: f32) -> i16 {
    (s * 32768.0).clamp(-32768.0, 32767.0) as i16
}

/// The default microphone, mixed down to mono and resampled to 48 kHz.
pub struct DeviceSource {
    queue: Queue,
    _stream: StreamThread,
}

/// Opens the default input device.
pub fn microphone() -> Result<DeviceSource, DeviceError> {
    let queue: Queue = Arc::new(Mutex::new(VecDeque::with_capacity(QUEUE_SAMPLES)));
    let feed = queue.clone();
    let stream = run_stream("microphone", move || {
        let device = cpal::default_host().default_input_device().ok_or(DeviceError::NoDevice("input"))?;
        let supported = device.default_input_config().map_err(|e| DeviceError::Device("input", e.to_string()))?;
        let format = supported.sample_format();
        let config: cpal::StreamConfig = supported.into();
        let channels = usize::from(config.channels.max(1));
        let mut resampler = Resampler::new(config.sample_rate, SAMPLE_RATE);
        let mut mono = Vec::new();
        let mut out = Vec::new();
        let mut take = move |samples: &mut dyn Iterator<Item = f32>| {
            mono.clear();
            out.clear();
            let mut frame = Vec::with_capacity(channels);
            for s in samples {
                frame.push(s);
                if frame.len() == channels {
                    mono.push(frame.iter().sum::<f32>() / channels as f32);
                    frame.clear();
                }
            }
            resampler.process(&mono, &mut out);
            push_bounded(&feed, out.iter().map(|&s| to_i16(s)));
        };
        let error = |e: cpal::Error| tracing::warn!("microphone: {e}");
        let built = match format {
            cpal::SampleFormat::F32 => device.build_input_stream(
                config,
                move |data: &[f32], _: &cpal::InputCallbackInfo| take(&mut data.iter().copied()),
                error,
                None,
            ),
            cpal::SampleFormat::I16 => device.build_input_stream(
                config,
                move |data: &[i16], _: &cpal::InputCallbackInfo| {
                    take(&mut data.iter().map(|&s| f32::from(s) / 32768.0));
                },
                error,
                None,
            ),
            other => return Err(DeviceError::Device("input", format!("unsupported sample format {other}"))),
        };
        built.map_err(|e| DeviceError::Device("input", e.to_string()))
    })?;
    Ok(DeviceSource { queue, _stream: stream })
}

impl Source for DeviceSource {
    fn next_frame(&mut self) -> Frame {
        let mut frame = [0; FRAME_SAMPLES];
        if let Ok(mut q) = self.queue.lock() {
            // Short of a frame (the device started late or stalled): the rest is silence.
            let n = q.len().min(FRAME_SAMPLES);
            for (slot, s) in frame.iter_mut().zip(q.drain(..n)) {
                *slot = s;
            }
        }
        frame
    }
}

/// The default speaker: 48 kHz mono resampled to the device's rate on every channel.
pub struct DeviceSink {
    queue: Queue,
    _stream: StreamThread,
}

/// Opens the default output device.
pub fn speaker() -> Result<DeviceSink, DeviceError> {
    let queue: Queue = Arc::new(Mutex::new(VecDeque::with_capacity(QUEUE_SAMPLES)));
    let drain = queue.clone();
    let stream = run_stream("speaker", move || {
        let device = cpal::default_host().default_output_device().ok_or(DeviceError::NoDevice("output"))?;
        let supported = device.default_output_config().map_err(|e| DeviceError::Device("output", e.to_string()))?;
        let format = supported.sample_format();
        let config: cpal::StreamConfig = supported.into();
        let channels = usize::from(config.channels.max(1));
        let mut resampler = Resampler::new(SAMPLE_RATE, config.sample_rate);
        let (mut pending, mut input) = (VecDeque::<f32>::new(), Vec::new());
        let mut fill = move |frames: usize| -> Vec<f32> {
            // Enough 48 kHz samples for `frames` device frames, resampled; what is
            // left over waits for the next callback.
            while pending.len() < frames {
                input.clear();
                if let Ok(mut q) = drain.lock() {
                    let n = q.len().min(FRAME_SAMPLES);
                    input.extend(q.drain(..n).map(|s| f32::from(s) / 32768.0));
                }
                if input.is_empty() {
                    break;
                }
                let mut out = Vec::new();
                resampler.process(&input, &mut out);
                pending.extend(out);
            }
            (0..frames).map(|_| pending.pop_front().unwrap_or(0.0)).collect()
        };
        let error = |e: cpal::Error| tracing::warn!("speaker: {e}");
        let built = match format {
            cpal::SampleFormat::F32 => device.build_output_stream(
                config,
                move |data: &mut [f32], _: &cpal::OutputCallbackInfo| {
                    let mono = fill(data.len() / channels);
                    for (frame, s) in data.chunks_mut(channels).zip(mono) {
                        frame.fill(s);
                    }
                },
                error,
                None,
            ),
            cpal::SampleFormat::I16 => device.build_output_stream(
                config,
                move |data: &mut [i16], _: &cpal::OutputCallbackInfo| {
                    let mono = fill(data.len() / channels);
                    for (frame, s) in data.chunks_mut(channels).zip(mono) {
                        frame.fill(to_i16(s));
                    }
                },
                error,
                None,
            ),
            other => return Err(DeviceError::Device("output", format!("unsupported sample format {other}"))),
        };
        built.map_err(|e| DeviceError::Device("output", e.to_string()))
    })?;
    Ok(DeviceSink { queue, _stream: stream })
}

impl Sink for DeviceSink {
    fn write(&mut self, frame: &Frame) -> Result<(), AudioError> {
        push_bounded(&self.queue, frame.iter().copied());
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), AudioError> {
        Ok(())
    }
}
