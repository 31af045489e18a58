/*
 * mt_protocol.h: command and error codes of the run protocol, version 1.
 * PROTOCOL.md is the specification; microtvm_tasks/session.py mirrors these numbers.
 */
#ifndef MT_PROTOCOL_H_
#define MT_PROTOCOL_H_

#define MT_PROTOCOL_VERSION 1u

/* Requests (host -> device). A reply has the request's type | 0x80 and its seq. */
#define MT_CMD_HELLO 0x01u
#define MT_CMD_DESCRIBE 0x02u
#define MT_CMD_DESCRIBE_TENSOR 0x03u
#define MT_CMD_SET_INPUT 0x04u
#define MT_CMD_RUN 0x05u
#define MT_CMD_GET_OUTPUT 0x06u
#define MT_CMD_PROFILE 0x07u
#define MT_REPLY_BIT 0x80u
#define MT_MSG_ERROR 0x7Fu

/* Error codes carried by an MT_MSG_ERROR frame (u16 code, then an ASCII message). */
#define MT_ERR_FRAME 1u        /* a frame failed its CRC or length check (seq 0) */
#define MT_ERR_TOO_LONG 2u     /* a frame exceeded MT_MAX_PAYLOAD (seq 0) */
#define MT_ERR_UNKNOWN_CMD 3u  /* unknown request type */
#define MT_ERR_BAD_ARGS 4u     /* payload of the wrong length or a bad field */
#define MT_ERR_INDEX 5u        /* tensor index out of range */
#define MT_ERR_RANGE 6u        /* offset/length outside the tensor */
#define MT_ERR_RUN 7u          /* the model's run() returned non-zero */
#define MT_ERR_NO_HELLO 8u     /* a command before a successful HELLO */
#define MT_ERR_VERSION 9u      /* HELLO with a protocol version this firmware does not speak */

#endif /* MT_PROTOCOL_H_ */
