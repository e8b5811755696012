//! A topic's ordered plugin chain and its atomic swap. Owns the chain
//! semantics: patches apply in order, drop and reject stop a message, a
//! failing plugin's batch follows its failure policy. Must never lose a
//! batch in flight during a swap: a run holds the chain it started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::PluginError;
use crate::attachment::{Attachment, FailurePolicy};
use crate::bindings::{Batch, BatchContext, Header, Verdict};
use crate::message::{Message, MessageRef, pack};
use crate::outcome::{Outcome, Routing};

/// An ordered list of attachments that can be replaced atomically while
/// batches run.
pub struct Chain {
    current: ArcSwap<Vec<Arc<Attachment>>>,
}

/// The result of running a batch through a chain.
#[derive(Debug)]
pub struct ChainRun {
    /// One outcome per input message, in order.
    pub outcomes: Vec<Outcome>,
    /// The plugin failures met on the way (their batches followed the
    /// attachment's failure policy).
    pub errors: Vec<PluginError>,
}

impl Chain {
    /// A chain of these attachments, applied first to last.
    pub fn new(attachments: Vec<Arc<Attachment>>) -> Self {
        Chain {
            current: ArcSwap::from_pointee(attachments),
        }
    }

    /// The attachments new batches will run through.
    pub fn attachments(&self) -> Arc<Vec<Arc<Attachment>>> {
        self.current.load_full()
    }

    /// Replaces the chain for new batches and returns the old one; batches
    /// already running finish on the old one.
    pub fn swap(&self, attachments: Vec<Arc<Attachment>>) -> Arc<Vec<Arc<Attachment>>> {
        self.current.swap(Arc::new(attachments))
    }

    /// Runs a batch; one outcome per message.
    pub fn run<M: MessageRef>(&self, context: &BatchContext, messages: &[M]) -> ChainRun {
        let chain = self.current.load_full();
        run_chain(&chain, context, messages)
    }
}

/// What the next plugin sees: the caller's messages until a drop or an
/// added header makes it differ, then owned copies.
enum Input<'a, M> {
    Borrowed(&'a [M]),
    Owned(Vec<Message>),
}

impl<M: MessageRef> Input<'_, M> {
    fn len(&self) -> usize {
        match self {
            Input::Borrowed(m) => m.len(),
            Input::Owned(m) => m.len(),
        }
    }

    fn pack(&self) -> Result<crate::bindings::Batch, usize> {
        match self {
            Input::Borrowed(m) => pack(m),
            Input::Owned(m) => pack(m),
        }
    }

    fn to_message(&self, position: usize) -> Message {
        match self {
            Input::Borrowed(m) => m[position].to_message(),
            Input::Owned(m) => m[position].clone(),
        }
    }
}

fn run_chain<M: MessageRef>(
    chain: &[Arc<Attachment>],
    context: &BatchContext,
    messages: &[M],
) -> ChainRun {
    let mut decided: Vec<Option<Outcome>> = vec![None; messages.len()];
    let mut routing: Vec<Routing> = std::iter::repeat_with(Routing::default)
        .take(messages.len())
        .collect();
    let mut errors = Vec::new();
    // Indices of messages still in the chain, and what the next plugin sees
    // of them: borrowed until a drop or an added header makes it differ.
    let mut live: Vec<usize> = (0..messages.len()).collect();
    let mut input = Input::Borrowed(messages);
    // Laid out once, and again only when a plugin changed the input.
    let mut packed: Option<Batch> = None;

    for attachment in chain {
        if live.is_empty() {
            break;
        }
        let batch = match packed.take() {
            Some(batch) => Ok(batch),
            None => input.pack().map_err(|bytes| attachment.too_large(bytes)),
        };
        let result = batch.and_then(|batch| {
            let verdicts = attachment.run_packed(context, &batch);
            packed = Some(batch);
            verdicts
        });
        let verdicts = match result {
            Ok(verdicts) => verdicts,
            Err(error) => {
                let plugin = attachment.plugin_name().to_string();
                let text = error.to_string();
                errors.push(error);
                match attachment.policy() {
                    FailurePolicy::Bypass => continue,
                    FailurePolicy::Reject => {
                        for &i in &live {
                            decided[i] = Some(Outcome::Reject {
                                plugin: plugin.clone(),
                                reason: text.clone(),
                            });
                        }
                    }
                    FailurePolicy::DeadLetter => {
                        for &i in &live {
                            decided[i] = Some(Outcome::DeadLetter {
                                plugin: plugin.clone(),
                                error: text.clone(),
                            });
                        }
                    }
                }
                live.clear();
                break;
            }
        };

        let mut next_live = Vec::with_capacity(live.len());
        let mut kept = Vec::with_capacity(live.len());
        // (position in `input`, headers a patch added to it)
        let mut added: Vec<(usize, Vec<Header>)> = Vec::new();
        for (position, (&index, verdict)) in live.iter().zip(verdicts).enumerate() {
            let plugin = || attachment.plugin_name().to_string();
            match verdict {
                Verdict::Pass => {
                    next_live.push(index);
                    kept.push(position);
                }
                Verdict::Drop(reason) => {
                    decided[index] = Some(Outcome::Drop {
                        plugin: plugin(),
                        reason,
                    })
                }
                Verdict::Reject(reason) => {
                    decided[index] = Some(Outcome::Reject {
                        plugin: plugin(),
                        reason,
                    })
                }
                Verdict::Patch(patch) => {
                    if !patch.add_headers.is_empty() {
                        added.push((position, patch.add_headers.clone()));
                    }
                    routing[index].apply(patch);
                    next_live.push(index);
                    kept.push(position);
                }
            }
        }
        // Later plugins see earlier plugins' headers and not their drops;
        // copy only when that makes their input differ.
        if kept.len() != input.len() || !added.is_empty() {
            let mut added = added.into_iter().peekable();
            let rebuilt = kept
                .iter()
                .map(|&position| {
                    let mut message = input.to_message(position);
                    while let Some((_, headers)) = added.next_if(|(p, _)| *p == position) {
                        message.headers.extend(headers);
                    }
                    message
                })
                .collect();
            input = Input::Owned(rebuilt);
            packed = None;
        }
        live = next_live;
    }

    let outcomes = decided
        .into_iter()
        .zip(routing)
        .map(|(decided, routing)| decided.unwrap_or(Outcome::Accept(routing)))
        .collect();
    ChainRun { outcomes, errors }
}
