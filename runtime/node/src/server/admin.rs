//! Administrative requests and message lookups: one frame in, one frame
//! out, on their own stream. The work runs on a blocking thread (it writes
//! metadata, may compile a plugin, or scans a log).

use std::sync::Arc;

use weir_proto::frame::{ErrorCode, Frame};

use super::io::{fail, write_frame};
use crate::NodeError;
use crate::auth::{Grant, Right};
use crate::lookup;
use crate::state::{Shared, now_ms};

pub(super) async fn handle(
    frame: Frame,
    mut send: quinn::SendStream,
    shared: Arc<Shared>,
    grant: Arc<Grant>,
) {
    let kind = frame.kind().name();
    // Which right the request needs, and on which topic (None: node-wide).
    let needs: Option<(Right, Option<String>)> = match &frame {
        Frame::CreateTopic(spec) => Some((Right::Admin, Some(spec.name.clone()))),
        Frame::DeleteTopic { name } => Some((Right::Admin, Some(name.clone()))),
        Frame::Attach { topic, .. } | Frame::Detach { topic, .. } => {
            Some((Right::Admin, Some(topic.clone())))
        }
        Frame::PutPlugin { .. } | Frame::DeletePlugin { .. } => Some((Right::Admin, None)),
        Frame::GetMessage { topic, .. } => Some((Right::Consume, Some(topic.clone()))),
        Frame::SeekGroup { topic, .. } => Some((Right::Admin, Some(topic.clone()))),
        Frame::ListGroups | Frame::DescribeGroup { .. } => Some((Right::Admin, None)),
        // Listing is filtered by what the token may see.
        Frame::ListTopics | Frame::DescribeTopic { .. } | Frame::ListPlugins => None,
        other => {
            let message = format!(
                "{} is not a request a client may open a stream with",
                other.kind().name()
            );
            fail(&mut send, ErrorCode::Malformed, message).await;
            return;
        }
    };
    if let Some((right, topic)) = &needs
        && !grant.allows(*right, topic.as_deref())
    {
        let on = topic
            .as_deref()
            .map_or("this node".to_string(), |t| format!("topic {t:?}"));
        fail(
            &mut send,
            ErrorCode::Forbidden,
            format!("the token lacks the {} right on {on}", right.name()),
        )
        .await;
        return;
    }
    let visible = |topic: &str| {
        [Right::Produce, Right::Consume, Right::Admin]
            .into_iter()
            .any(|r| grant.allows(r, Some(topic)))
    };
    if let Frame::DescribeTopic { name } = &frame
        && !visible(name)
    {
        fail(
            &mut send,
            ErrorCode::Forbidden,
            format!("the token has no right on topic {name:?}"),
        )
        .await;
        return;
    }
    let work_shared = shared.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Frame, NodeError> {
        let s = work_shared;
        Ok(match frame {
            Frame::CreateTopic(spec) => {
                s.create_topic(spec)?;
                Frame::Ok
            }
            Frame::DeleteTopic { name } => {
                s.delete_topic(&name)?;
                Frame::Ok
            }
            Frame::ListTopics => Frame::TopicList(s.describe(None)?),
            Frame::DescribeTopic { name } => Frame::TopicList(s.describe(Some(&name))?),
            Frame::PutPlugin { name, wasm } => Frame::PluginStored(s.put_plugin(&name, &wasm)?),
            Frame::ListPlugins => Frame::PluginList(s.list_plugins()),
            Frame::DeletePlugin { name } => {
                s.delete_plugin(&name)?;
                Frame::Ok
            }
            Frame::Attach {
                topic,
                plugin,
                config,
                on_error,
                position,
            } => {
                s.attach(&topic, &plugin, &config, on_error, position)?;
                Frame::Ok
            }
            Frame::Detach { topic, plugin } => {
                s.detach(&topic, &plugin)?;
                Frame::Ok
            }
            Frame::GetMessage { topic, key } => {
                let t = s.topic(&topic)?;
                let found =
                    lookup::find(&t, &key, now_ms(), s.config.limits.lookup_scan_bytes_max)?;
                Frame::MessageFound {
                    partition: found.partition,
                    offset: found.offset,
                    batch: found.batch,
                }
            }
            Frame::ListGroups => Frame::GroupList(s.describe_groups(None)?),
            Frame::DescribeGroup { group } => Frame::GroupList(s.describe_groups(Some(&group))?),
            Frame::SeekGroup { group, topic, to } => {
                let t = s.topic(&topic)?;
                s.group_topic(&group, &t)?.seek(&t, to)?;
                Frame::Ok
            }
            other => {
                return Err(NodeError::Internal(format!(
                    "unexpected {}",
                    other.kind().name()
                )));
            }
        })
    })
    .await;
    let answer = match result {
        Ok(Ok(Frame::TopicList(topics))) => Frame::TopicList(
            topics
                .into_iter()
                .filter(|t| visible(&t.spec.name))
                .collect(),
        ),
        Ok(Ok(frame)) => frame,
        Ok(Err(e)) => {
            tracing::info!(request = kind, error = %e, "request refused");
            fail(&mut send, e.code(), e.to_string()).await;
            return;
        }
        Err(e) => {
            fail(
                &mut send,
                ErrorCode::Internal,
                format!("request failed: {e}"),
            )
            .await;
            return;
        }
    };
    if write_frame(&mut send, &answer).await.is_ok() {
        let _ = send.finish();
    }
}
