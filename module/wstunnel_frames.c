/* Licensed to the Apache Software Foundation (ASF) under one or more
 * contributor license agreements. The ASF licenses this file to You under the
 * Apache License, Version 2.0 (the "License"); you may not use this file
 * except in compliance with the License. You may obtain a copy of the License
 * at http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 * WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 * License for the specific language governing permissions and limitations
 * under the License.
 */

/* wstunnel_frames.c: the WebSocket frame tracker (see wstunnel.h). */

#define PWS_LOOP_ONLY /* APR only: the loop test builds it without httpd */
#include "wstunnel.h"

static apr_size_t proxy_wstunnel_frame_head_size(const unsigned char *head)
{
    apr_size_t length = head[1] & 0x7F;
    return 2
           + (length == 126   ? 2
              : length == 127 ? 8
                              : 0)
           + ((head[1] & 0x80) ? 4 : 0);
}

void proxy_wstunnel_frames_feed(proxy_wstunnel_frames *f, const char *data,
                                apr_size_t length)
{
    while (length > 0 && !f->closed && !f->lost) {
        if (f->payload_left > 0) {
            apr_size_t skip = f->payload_left < (apr_uint64_t)length
                                  ? (apr_size_t)f->payload_left
                                  : length;
            f->payload_left -= skip;
            data += skip;
            length -= skip;
        }
        else {
            unsigned char *head = f->head;
            unsigned opcode, short_length;
            apr_uint64_t payload = 0;
            apr_size_t k;
            head[f->head_length++] = (unsigned char)*data++;
            length--;
            if (f->head_length < 2
                || f->head_length < proxy_wstunnel_frame_head_size(head)) {
                continue;
            }
            opcode = head[0] & 0x0F;
            short_length = head[1] & 0x7F;
            if (short_length < 126) {
                payload = short_length;
            }
            else {
                for (k = 2; k < (short_length == 126 ? 4u : 10u); k++) {
                    payload = (payload << 8) | head[k];
                }
            }
            if ((opcode >= 0x3 && opcode <= 0x7) || opcode > 0xA
                || (opcode >= 0x8
                    && (!(head[0] & 0x80) || (head[0] & 0x70)
                        || short_length > 125))) {
                f->lost = 1;
                return;
            }
            f->in_close = opcode == 0x8;
            f->payload_left = payload;
            f->head_length = 0;
        }
        if (f->in_close && f->payload_left == 0 && f->head_length == 0) {
            f->closed = 1;
        }
    }
}
